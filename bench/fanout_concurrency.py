"""Fan-outs side by side (section ``fanout-concurrency``): distributed mode (PostgreSQL, Redis, hiem worker),
and embedded too for the filters.

Three measurements, each against real processes (``hiem serve``, ``hiem worker``, the bench consumer):

1. **A small Notify during a big fan-out's creation** (:func:`small_during_big`): ``big`` subscribers of ``ILI``
   (one real Subscribe, the rest cloned in SQL) point at the bench consumer; ``small_subscribers`` other
   subscribers of ``FEVER`` point at a second consumer process (another origin, as disjoint subscribers are other
   systems) that notes when each marked Notify arrives. The big Notify is published, then a small one every
   ``spacing`` s for as long as the big fan-out is being created (at least ``small_notifies``), and
   ``delivering_notifies`` more once it is all queued; each is timed from just before its POST to its arrival at
   the last of its consumers. The big fan-out is being created while its ``hiem.fanout`` task runs, in two
   phases, and every small Notify is tagged with the one it was published in: ``inserting`` (before the big
   delivery rows were committed, seen by polling the notification's ``fanout_state`` from another connection),
   ``enqueueing`` (rows committed, not all handed to the queue yet), or else ``delivering``. The target counts
   both creation phases; each sample also says how many of the big fan-out's deliveries were already queued and
   not yet delivered when it was published.
2. **MessageContent filters** (:func:`filters`, both modes): the same ``filter_n``-subscriber fan-out without
   filters and with XPath 1.0 filters on half the subscriptions, half of which match the message:
   delivered/s and creation times (Notify received -> delivery rows committed -> all handed to the queue),
   after an untimed ``WARM_N``-subscriber fan-out.
   A small fan-out whose filters all match is tried first (it also starts the XPath sandboxes): if it does
   not deliver to each of them, the mode's filtered figure is recorded as failed with what the broker
   recorded, instead of waiting out a whole fan-out.
3. **Scaling with processes** (:func:`process_scaling`): one broker, one database; the same
   ``scaling_n``-subscriber fan-out with 1 and with 2 ``hiem worker`` processes (each with hiem's default
   concurrency, one Celery child per core), in the order 1, 2, 2, 1 (or 1, 2) so a drift of the shared
   machine falls on both; the ratio of the medians, and what bounds it, from the CPU of each role measured
   during the same fan-outs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench import harness, population, suite
from bench.meter import CpuMeter
from tests.support import wsn
from tests.support.processes import free_port

BIG_TOPIC = suite.ILI
SMALL_TOPIC = suite.FEVER
PLAIN_TOPIC = suite.INFLUENZA                      # the fan-out without filters
FILTERED_TOPIC = "nhin:GIPSE/Biosurveillance/Rash"  # the same with filters on half its subscriptions
PROBE_TOPIC = "nhin:GIPSE/Biosurveillance/Neurological"  # a few filtered subscribers: does the filter path work
WARM_TOPIC = "nhin:GIPSE/Biosurveillance/Gastrointestinal"  # a fresh broker's first fan-out, not timed
WARM_N = 200
SCALING_TOPIC = suite.ILI

XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
#: bench/load.py's PAYLOAD has <gipse:Count>42</gipse:Count>: one filter matches it, the other does not,
#: both walk the same path (the same evaluation work)
MATCHING_FILTER = "/gipse:Report/gipse:Count &gt; 40"
FAILING_FILTER = "/gipse:Report/gipse:Count &gt; 100"


@dataclass(frozen=True)
class Sizes:
    big: int
    small_subscribers: int
    small_notifies: int  # at least this many; more while the big fan-out is still being created
    spacing: float
    max_small_notifies: int  # the most, should the big fan-out's creation never end
    delivering_notifies: int  # published after the big fan-out is all enqueued (its deliveries under way)
    arrival_timeout: float  # how long after the last small Notify its arrivals are waited for
    filter_n: int
    scaling_n: int
    scaling_rounds: tuple[int, ...]  # worker processes per run, in order
    fanout_timeout: float


SIZES = {
    "smoke": Sizes(big=2_000, small_subscribers=10, small_notifies=5, spacing=0.1, max_small_notifies=60,
                   delivering_notifies=5, arrival_timeout=60.0,
                   filter_n=200, scaling_n=200, scaling_rounds=(1, 2), fanout_timeout=90.0),
    "default": Sizes(big=100_000, small_subscribers=10, small_notifies=50, spacing=0.1,
                     max_small_notifies=1200, delivering_notifies=20, arrival_timeout=120.0,
                     filter_n=10_000, scaling_n=10_000, scaling_rounds=(1, 2, 2, 1), fanout_timeout=300.0),
}
SIZES["large"] = SIZES["default"]
TARGET_SCALING = 1.7


def run(ctx: suite.Context) -> dict[str, Any]:
    sizes = SIZES[ctx.plan.name]
    found: dict[str, Any] = {"sizes": asdict(sizes)}
    for key, measure in (("small_during_big", small_during_big), ("filters", filters),
                         ("process_scaling", process_scaling)):
        ctx.log(f"  fanout-concurrency: {key} ...")
        try:
            found[key] = measure(ctx, sizes)
        except Exception as exc:  # one broken part must not lose the others' figures; the run still fails
            ctx.log(f"  fanout-concurrency: {key} FAILED: {exc!r}")
            ctx.results.setdefault("errors", {})[f"fanout_concurrency.{key}"] = \
                "".join(traceback.format_exception(exc))[-4000:]
    return found


# -- helpers ---------------------------------------------------------------------------------------------------
class CommitWatch(threading.Thread):
    """Polls (its own connection, every 10 ms) the first notification after ``after``: its id, and when its
    ``fanout_state`` becomes done as seen from outside, i.e. when the fan-out's transaction with all its
    delivery rows committed. hiem records no commit time itself:
    ``fanout_done_at`` is the time the fan-out statement began."""

    def __init__(self, database_url: str, after: int) -> None:
        super().__init__(daemon=True, name="commit-watch")
        self.table = harness.DeliveryTable(database_url)
        self.after = after
        self.notification_id: int | None = None
        self.committed: float | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set() and self.committed is None:
            rows = self.table.query("SELECT id, fanout_state FROM notifications WHERE id > ? ORDER BY id LIMIT 1",
                                    self.after)
            if rows:
                self.notification_id = self.notification_id or int(rows[0][0])
                if rows[0][1] == "done":
                    self.committed = time.time()
            self._stop_event.wait(0.01)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self.table.close()


def creation(table: harness.DeliveryTable, watch: CommitWatch) -> dict[str, Any]:
    """A fan-out's milestones, in seconds after the broker received its Notify."""
    nid = watch.notification_id
    if nid is None:
        return {}
    received, started = (harness.epoch(v) for v in table.query(
        "SELECT received_at, fanout_done_at FROM notifications WHERE id = ?", nid)[0])
    first, last = (harness.epoch(v) for v in table.query(
        "SELECT min(enqueued_at), max(enqueued_at) FROM deliveries WHERE notification_id = ?", nid)[0])
    assert received is not None

    def since(value: float | None) -> float | None:
        return round(value - received, 3) if value else None

    return {"notification_id": nid, "fanout_started_s": since(started), "committed_s": since(watch.committed),
            "first_enqueued_s": since(first), "all_enqueued_s": since(last)}


def subscribe(broker: harness.Broker, consumer: str, topic: str, extra_filter: str = "") -> str:
    response = wsn.call(broker.url, "Subscribe", wsn.subscribe_body(consumer, topic=topic, extra_filter=extra_filter))
    if response.status_code != 200:
        raise RuntimeError(f"Subscribe answered {response.status_code}: {response.text[:500]}")
    return wsn.subscription_id(response)


def analyze(database_url: str) -> None:
    """What autovacuum does after a bulk load, done now so the planner does not change its mind mid-run."""
    engine = create_engine(database_url)  # not DeliveryTable: SQLite's is read-only
    try:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def timed_fanout(ctx: suite.Context, broker: harness.Broker, consumer_url: str, table: harness.DeliveryTable,
                 n: int, topic: str, timeout: float) -> dict[str, Any]:
    """suite.fanout_once (answer -> last delivery, CPU by role, RSS), plus its creation milestones."""
    watch = CommitWatch(broker.database_url, table.last_notification())
    watch.start()
    try:
        entry = suite.fanout_once(ctx, broker, consumer_url, table, n, timeout, topic=topic)
    finally:
        watch.stop()
    entry["creation"] = creation(table, watch)
    return entry


# -- 1. a small Notify during a big fan-out's creation ---------------------------------------------------------
class RecordingConsumer:
    """A second bench consumer process (its own origin) that notes when marked Notifies arrive."""

    def __init__(self, ctx: suite.Context, name: str) -> None:
        self.port = free_port()
        self.proc = harness.Proc(["-m", "bench.consumer", "--port", str(self.port), "--record"],
                                 ctx.tmp / f"{name}-consumer.log")

    def __enter__(self) -> RecordingConsumer:
        self.proc.start("listening")
        return self

    def __exit__(self, *_: object) -> None:
        self.proc.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def arrivals(self) -> list[tuple[float, str, int]]:
        return [tuple(a) for a in httpx.get(self.url("arrivals"), timeout=10).json()]  # type: ignore[misc]


def marked_notify(broker: harness.Broker, mark: int) -> bytes:
    payload = ("<gipse:Report xmlns:gipse='urn:bench:gipse'><gipse:Syndrome>Fever</gipse:Syndrome>"
               f"<gipse:Count>7</gipse:Count><gipse:Note>bench-mark-{mark}</gipse:Note></gipse:Report>")
    return wsn.envelope(wsn.notify_body(SMALL_TOPIC, payload), action=wsn.ACTIONS["Notify"],
                        to=broker.url + "/wsn/NotificationBroker")


def post_notify(client: httpx.Client, broker: harness.Broker, body: bytes) -> None:
    response = client.post(broker.url + "/wsn/NotificationBroker", content=body,
                           headers={"Content-Type": "application/soap+xml; charset=utf-8; "
                                                    f'action="{wsn.ACTIONS["Notify"]}"'})
    if response.status_code != 202:
        raise RuntimeError(f"Notify answered {response.status_code}: {response.text[:500]}")


def wait_arrivals(consumer: RecordingConsumer, marks: range, per_mark: int, timeout: float) -> dict[int, list[float]]:
    """Arrival times per mark, once every mark reached ``per_mark`` consumers or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        by_mark: dict[int, list[float]] = {m: [] for m in marks}
        for when, _path, mark in consumer.arrivals():
            if mark in by_mark:
                by_mark[mark].append(when)
        if all(len(v) >= per_mark for v in by_mark.values()) or time.monotonic() > deadline:
            return by_mark
        time.sleep(0.2)


def small_during_big(ctx: suite.Context, sizes: Sizes) -> dict[str, Any]:
    found: dict[str, Any] = {"big": sizes.big, "small_subscribers": sizes.small_subscribers,
                             "small_notifies": sizes.small_notifies, "spacing_s": sizes.spacing,
                             "env": suite.FANOUT_ENV}
    with suite.deployment(ctx, "distributed", "fc-latency", **suite.FANOUT_ENV) as (broker, consumer_url, table), \
            RecordingConsumer(ctx, "fc-small") as small:
        for index in range(sizes.small_subscribers):
            subscribe(broker, small.url(f"small/{index}"), SMALL_TOPIC)
        found["big_subscribers_created"] = suite.ensure_subscribers(broker, consumer_url, BIG_TOPIC, 0, sizes.big, 1)
        analyze(broker.database_url)
        with httpx.Client(timeout=60) as client:
            # warm-up: the small path's first use (connection pools, the workers' pipelines) is not measured
            warm = range(1_000_000, 1_000_003)
            for mark in warm:
                post_notify(client, broker, marked_notify(broker, mark))
            wait_arrivals(small, warm, sizes.small_subscribers, 60)
            roles = {**suite.roles(broker, harness.CONSUMER_PIDS.get(consumer_url)), "consumer_small": small.proc.pid}
            meter = CpuMeter(roles, suite.database_name(broker)).start()
            watch = CommitWatch(broker.database_url, table.last_notification())
            watch.start()
            big_answered, _ = suite.publish(client, broker, BIG_TOPIC)
            published: list[tuple[float, float, bool]] = []  # (before the POST, answered, big rows committed?)
            # one small Notify every `spacing` s for as long as the big fan-out is being created (inserted,
            # then handed to the queue), at least `small_notifies`, then a few while its deliveries run
            first_slot = time.monotonic()
            after_enqueued: int | None = None
            mark = 0
            while mark < sizes.max_small_notifies:
                if mark >= sizes.small_notifies and after_enqueued is not None \
                        and mark - after_enqueued >= sizes.delivering_notifies:
                    break
                time.sleep(max(0.0, first_slot + mark * sizes.spacing - time.monotonic()))
                committed = watch.committed is not None
                sent = time.time()
                post_notify(client, broker, marked_notify(broker, mark))
                published.append((sent, time.time(), committed))
                mark += 1
                if after_enqueued is None and committed and mark % 10 == 0 and watch.notification_id is not None \
                        and not table.scalar("SELECT count(*) FROM deliveries WHERE notification_id = ? AND "
                                             "enqueued_at IS NULL", watch.notification_id):
                    after_enqueued = mark
        by_mark = wait_arrivals(small, range(len(published)), sizes.small_subscribers, sizes.arrival_timeout)
        cpu = meter.stop()
        watch.stop()
        big = creation(table, watch)
        nid = watch.notification_id
        big["states_at_end"] = table.states(nid) if nid else {}
        ahead = [queued_ahead(table, nid, sent) if nid else None for sent, _, _ in published]
    enqueued_all = (big_answered + big["all_enqueued_s"]) if big.get("all_enqueued_s") is not None else None
    samples = []
    for mark, (sent, answered, committed) in enumerate(published):
        arrived = by_mark[mark]
        # the big fan-out is "being created" while its hiem.fanout task runs: inserting its delivery rows,
        # then handing them to the queue (enqueueing)
        phase = "inserting" if not committed else \
            "enqueueing" if enqueued_all is None or sent < enqueued_all else "delivering"
        complete = len(arrived) >= sizes.small_subscribers
        samples.append({"mark": mark, "published_s": round(sent - big_answered, 3), "phase": phase,
                        "answer_ms": round(1000 * (answered - sent), 1), "arrived": len(arrived),
                        "latency_s": round(max(arrived) - sent, 4) if complete else None,
                        "big_deliveries_queued_ahead": ahead[mark]})
    found.update({"big_fanout": big, "cpu": cpu, "samples": samples,
                  "phases": {p: sum(1 for s in samples if s["phase"] == p)
                             for p in ("inserting", "enqueueing", "delivering")}})
    for key, phases in (("being_created", ("inserting", "enqueueing")), ("inserting", ("inserting",)),
                        ("enqueueing", ("enqueueing",)), ("all", ("inserting", "enqueueing", "delivering"))):
        found[key] = latency_summary([s for s in samples if s["phase"] in phases], sizes.arrival_timeout)
    found["bound"] = latency_bound(found)
    ctx.log(f"  small Notify during a {sizes.big:,}-subscriber fan-out: big rows committed "
            f"{big.get('committed_s')} s, all enqueued {big.get('all_enqueued_s')} s after its Notify; "
            f"phases {found['phases']}; p50/p99 while being created {found['being_created'].get('p50_ms')}/"
            f"{found['being_created'].get('p99_ms')} ms, while inserting {found['inserting'].get('p50_ms')}/"
            f"{found['inserting'].get('p99_ms')} ms; load {cpu['load_average']}, other jobs {cpu['other_cores']} "
            f"cores; {found['bound']}")
    return found


def queued_ahead(table: harness.DeliveryTable, notification_id: int, when: float) -> int:
    """The big fan-out's deliveries handed to the queue before ``when`` and not delivered by then."""
    at = datetime.fromtimestamp(when, UTC)
    return int(table.scalar("SELECT count(*) FROM deliveries WHERE notification_id = ? AND enqueued_at < ? "
                            "AND (delivered_at IS NULL OR delivered_at > ?)", notification_id, at, at))


def latency_bound(found: dict[str, Any]) -> str:
    """What the slow small Notifies waited for, from the samples themselves: the big fan-out's deliveries
    queued ahead of them (one FIFO queue for every task), against those that had nothing ahead."""
    clear = [s for s in found["samples"] if not s["big_deliveries_queued_ahead"]]
    behind = [s for s in found["samples"] if s["big_deliveries_queued_ahead"]]
    if not behind:
        return "no small Notify had big deliveries queued ahead of it"
    waited = [s["latency_s"] for s in behind if s["latency_s"] is not None]
    clear_text = (f"{len(clear)} published with none of the big fan-out's deliveries queued yet took at most "
                  f"{max(s['latency_s'] or 0 for s in clear):.3f} s; " if clear else "")
    return (f"{clear_text}{len(behind)} published with {min(s['big_deliveries_queued_ahead'] for s in behind):,}-"
            f"{max(s['big_deliveries_queued_ahead'] for s in behind):,} of them queued and not yet delivered took "
            f"{min(waited, default=0):.2f}-{max(waited, default=0):.2f} s ({len(behind) - len(waited)} not "
            "complete)")


def latency_summary(samples: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """Percentiles of publish -> last arrival; a Notify that did not reach all its consumers counts as
    the time waited for it (``timeout`` past the last publish), so it can only make a percentile worse."""
    if not samples:
        return {"samples": 0}
    missing = sum(1 for s in samples if s["latency_s"] is None)
    seconds = [s["latency_s"] if s["latency_s"] is not None else float(timeout) for s in samples]
    return {**suite.percentiles(seconds), "incomplete": missing}


# -- 2. MessageContent filters ---------------------------------------------------------------------------------
def content_filter(expression: str) -> str:
    return (f"<wsnt:MessageContent Dialect='{XPATH}' xmlns:gipse='urn:bench:gipse'>{expression}"
            "</wsnt:MessageContent>")


def xpath_sandboxes(broker: harness.Broker) -> int:
    """hiem-xpath sandbox processes (multiprocessing spawn children) under the workers or the embedded web."""
    import psutil

    count = 0
    for owner in broker.workers or [broker.web]:
        for proc in psutil.Process(owner.proc.pid).children(recursive=True):  # type: ignore[union-attr]
            with contextlib.suppress(psutil.Error):
                count += "spawn_main" in " ".join(proc.cmdline())
    return count


def filters(ctx: suite.Context, sizes: Sizes) -> dict[str, Any]:
    """Both modes: the filters run where the fan-out runs (a worker's pool child, or the embedded web
    process), so each mode is its own measurement."""
    return {mode: filters_in(ctx, sizes, mode) for mode in ("distributed", "embedded")}


def filters_work(broker: harness.Broker, consumer_url: str, table: harness.DeliveryTable,
                 timeout: float = 30.0) -> str | None:
    """None when a fan-out over a few subscribers whose filter matches the message delivers to each of them
    within ``timeout``; else why not (what the broker recorded), so a broken filter path is reported at
    once instead of after a whole fan-out's timeout.

    One filtered subscriber per core: the probe's fan-out then starts every XPath sandbox of the process
    that runs it (hiem splits a notification's filters over them), so the timed fan-out does not pay for
    starting one."""
    probes = os.cpu_count() or 1
    for _ in range(probes):
        subscribe(broker, consumer_url, PROBE_TOPIC, content_filter(MATCHING_FILTER))
    watch = CommitWatch(broker.database_url, table.last_notification())
    watch.start()
    try:
        with httpx.Client(timeout=60) as client:
            suite.publish(client, broker, PROBE_TOPIC)
        deadline = time.monotonic() + timeout
        while watch.committed is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
    if watch.committed is None:
        logs = [line for proc in [*broker.workers, broker.web] for line in proc.output().splitlines()
                if "Error" in line and not line.startswith(" ")]
        return f"a fan-out over MessageContent-filtered subscribers did not commit in {timeout:.0f} s; " + (
            logs[-1][:400] if logs else "no error logged")
    matched = table.scalar("SELECT count(*) FROM deliveries WHERE notification_id = ?", watch.notification_id)
    if matched >= probes:
        return None
    error = table.scalar("SELECT filter_error FROM subscriptions WHERE filter_error IS NOT NULL LIMIT 1")
    return (f"{probes} MessageContent filters that match the message got {matched} deliveries; the broker "
            f"recorded a filter failure: {error}")


def filters_in(ctx: suite.Context, sizes: Sizes, mode: str) -> dict[str, Any]:
    n = sizes.filter_n
    filtered, matching = n // 2, n // 4
    found: dict[str, Any] = {"n": n, "with_filter": filtered, "filter_matches": matching,
                             "filters": {"matching": MATCHING_FILTER, "not_matching": FAILING_FILTER},
                             "env": suite.FANOUT_ENV}
    with suite.deployment(ctx, mode, "fc-filters", **suite.FANOUT_ENV) as (broker, consumer_url, table):
        plain = subscribe(broker, consumer_url, PLAIN_TOPIC)
        population.clone_subscriptions(broker.database_url, n - 1, plain)
        # the filtered topic: n - filtered without a filter, then each kind of filter; clones keep the
        # template's filter columns, and their random ids interleave the three kinds in id order
        for template, count in ((subscribe(broker, consumer_url, FILTERED_TOPIC), n - filtered),
                                (subscribe(broker, consumer_url, FILTERED_TOPIC,
                                           content_filter(MATCHING_FILTER)), matching),
                                (subscribe(broker, consumer_url, FILTERED_TOPIC,
                                           content_filter(FAILING_FILTER)), filtered - matching)):
            population.clone_subscriptions(broker.database_url, count - 1, template)
        population.clone_subscriptions(broker.database_url, WARM_N - 1, subscribe(broker, consumer_url, WARM_TOPIC))
        analyze(broker.database_url)
        # a fresh broker's first fan-out starts sender threads and connection pools: not in either timed one
        warm = suite.fanout_once(ctx, broker, consumer_url, table, WARM_N, sizes.fanout_timeout, topic=WARM_TOPIC)
        found["warm_up"] = {"n": WARM_N, "done": warm["done"], "seconds": warm["seconds"]}
        found["without_filters"] = timed_fanout(ctx, broker, consumer_url, table, n, PLAIN_TOPIC,
                                                sizes.fanout_timeout)
        # also the warm-up: the probe's fan-out starts the XPath sandboxes of the process that runs it
        broken = filters_work(broker, consumer_url, table)
        found["sandboxes_before"] = xpath_sandboxes(broker)
        expected = n - filtered + matching
        if broken:
            found["with_filters"] = {"failed": broken, "expected_deliveries": expected}
            ctx.log(f"  {mode}: {n:,} subscribers with filters NOT MEASURED: {broken}")
        else:
            found["with_filters"] = timed_fanout(ctx, broker, consumer_url, table, expected, FILTERED_TOPIC,
                                                 sizes.fanout_timeout)
            found["with_filters"]["expected_deliveries"] = expected
        found["sandboxes_after"] = xpath_sandboxes(broker)
        found["filter_failures"] = table.scalar("SELECT coalesce(sum(filter_failures), 0) FROM subscriptions")
    plain_entry, filtered_entry = found["without_filters"], found["with_filters"]
    found["delivered_per_second_ratio"] = suite.ratio(filtered_entry.get("deliveries_per_second"),
                                                      plain_entry["deliveries_per_second"])
    found["committed_ratio"] = suite.ratio((filtered_entry.get("creation") or {}).get("committed_s"),
                                           plain_entry["creation"].get("committed_s"))
    for label, entry in (("without", plain_entry), ("with", filtered_entry)):
        if "creation" in entry:
            ctx.log(f"  {mode}: {n:,} subscribers {label} filters: {entry['deliveries_per_second']:,.0f} delivered/s"
                    f" ({entry['states'].get('delivered', 0):,} delivered), rows committed "
                    f"{entry['creation'].get('committed_s')} s, all enqueued {entry['creation'].get('all_enqueued_s')}"
                    f" s after the Notify; load {entry['cpu']['load_average']}")
    return found


# -- 3. scaling with processes ---------------------------------------------------------------------------------
def process_scaling(ctx: suite.Context, sizes: Sizes) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    n = sizes.scaling_n
    runs: list[dict[str, Any]] = []
    # hiem's defaults: 2 worker processes at most, each with Celery's default concurrency (one child per core)
    with suite.deployment(ctx, "distributed", "fc-scaling", **suite.FANOUT_ENV) as (broker, consumer_url, table):
        suite.ensure_subscribers(broker, consumer_url, SCALING_TOPIC, 0, n, min(n, ctx.plan.soap_subscribe_max))
        analyze(broker.database_url)
        second = broker.workers.pop()  # started with the broker; run with it or without it
        second.stop()
        try:
            for processes in sizes.scaling_rounds:
                if processes == 2 and not broker.workers[1:]:
                    second.start()
                    harness.wait_for_worker(second)
                    broker.workers.append(second)
                elif processes == 1 and broker.workers[1:]:
                    broker.workers.pop().stop()
                entry = timed_fanout(ctx, broker, consumer_url, table, n, SCALING_TOPIC, sizes.fanout_timeout)
                entry["worker_processes"] = processes
                runs.append(entry)
                ctx.log(f"  {processes} worker process(es) x {cores} children, N={n:,}: "
                        f"{entry['deliveries_per_second']:,.0f}/s, machine {entry['cpu']['machine_busy_cores']} of "
                        f"{cores} cores busy, by role {entry['cpu']['cores_by_role']}, other "
                        f"{entry['cpu']['other_cores']}")
        finally:
            if second not in broker.workers:
                second.stop()
    by_count = {p: [r for r in runs if r["worker_processes"] == p] for p in (1, 2)}
    median = {p: statistics.median(r["deliveries_per_second"] or 0 for r in rs) for p, rs in by_count.items()}
    found: dict[str, Any] = {"n": n, "worker_concurrency": cores, "order": list(sizes.scaling_rounds), "runs": runs,
                             "median_per_second": {str(p): v for p, v in median.items()},
                             "ratio": suite.ratio(median[2], median[1])}
    found["bound"] = scaling_bound(by_count, cores)
    ctx.log(f"  2 / 1 worker processes: {found['ratio']} (target >= {TARGET_SCALING}); {found['bound']['verdict']}")
    return found


def _mean_cpu(runs: list[dict[str, Any]]) -> dict[str, Any]:
    roles: dict[str, list[float]] = {}
    for run_ in runs:
        grouped: dict[str, float] = {}
        for role, cores in run_["cpu"]["cores_by_role"].items():
            group = "workers" if role.startswith("worker") else role  # worker1 + worker2 together
            grouped[group] = grouped.get(group, 0.0) + cores
        for group, cores in grouped.items():
            roles.setdefault(group, []).append(cores)
    return {"machine_busy_cores": round(statistics.mean(r["cpu"]["machine_busy_cores"] for r in runs), 2),
            "other_cores": round(statistics.mean(r["cpu"]["other_cores"] for r in runs), 2),
            "cores_by_role": {k: round(statistics.mean(v), 2) for k, v in sorted(roles.items())},
            "cpu_ms_per_delivery": round(statistics.mean(r.get("cpu_ms_per_delivery", {}).get("total", 0)
                                                         for r in runs), 2)}


def scaling_bound(by_count: dict[int, list[dict[str, Any]]], cores: int) -> dict[str, Any]:
    """What limits the gain of a second worker process, from the CPU measured during the same fan-outs.

    ``cpu_ms_per_delivery`` is the CPU of all our roles (workers, PostgreSQL, Redis, web, consumer) per
    delivery. At the 2-process cost, ``cores`` can deliver at most ``cores / cost`` per second: as a ratio to
    the 1-process rate, the most any number of processes could reach on this machine. The consumer is one
    asyncio process: near a whole core, it is the limit instead."""
    one, two = _mean_cpu(by_count[1]), _mean_cpu(by_count[2])
    rate_one = statistics.median(r["deliveries_per_second"] or 0 for r in by_count[1])
    cost = two["cpu_ms_per_delivery"]
    ceiling = round(cores * 1000 / cost / rate_one, 2) if cost and rate_one else None
    needed = round(TARGET_SCALING * rate_one * cost / 1000, 2) if cost else None
    consumer = max(one["cores_by_role"].get("consumer", 0.0), two["cores_by_role"].get("consumer", 0.0))
    roles = ", ".join(f"{role} {value}" for role, value in two["cores_by_role"].items() if role != "bench")
    if consumer >= 0.9:
        verdict = f"the consumer: {consumer} cores (one asyncio process)"
    elif needed is not None and needed > cores:
        verdict = (f"CPU: {TARGET_SCALING}x would need {needed} cores at the 2-process CPU cost of {cost} ms per "
                   f"delivery (1 process: {one['cpu_ms_per_delivery']} ms); {cores} cores allow at most {ceiling}x. "
                   f"Busy cores with 1 process {one['machine_busy_cores']} (other jobs {one['other_cores']}), with 2 "
                   f"{two['machine_busy_cores']} ({roles}; other jobs {two['other_cores']})")
    else:
        verdict = (f"not the CPU ({TARGET_SCALING}x needs {needed} of {cores} cores) nor the consumer ({consumer} "
                   f"cores): with 2 processes {two['machine_busy_cores']} busy ({roles})")
    return {"one_process": one, "two_processes": two, "cpu_ceiling_ratio": ceiling, "cores_needed_for_target": needed,
            "consumer_cores_max": consumer, "verdict": verdict}

"""The benchmarks themselves. Each function starts what it needs, measures, stops it, returns plain data.

Figures are ratios against baselines measured in the same run (see ``baselines``):

* (a)  aiohttp ClientSession loop POSTing the exact Notify bytes hiem sends to the same consumer,
       keep-alive, ``DELIVERY_CONCURRENCY`` requests in flight;
* (a') wrk doing the same (the consumer's physical limit on this machine);
* (b)  a bare "hello" WSGI app on cheroot's wsgi.Server with hiem's thread count, loaded by the same
       client as the Subscribe benchmark;
* (s)  the signing floor: each delivery built, signed and POSTed by lxml, hashlib, cryptography and aiohttp
       alone, one process per core (bench/signing_floor.py), with an RSA-2048 and an EC P-256 key.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import harness, load, population
from bench.meter import CpuMeter
from tests.support import wsn


def _sender_threads() -> int:
    """Threads one hiem process uses to POST to consumers (hiem.delivery.pipeline.SENDER_THREADS)."""
    try:
        from hiem.delivery import pipeline as sending

        return int(sending.SENDER_THREADS)
    except Exception:  # an import problem shows up in the benchmarks themselves
        return 16


#: baseline (a)'s requests in flight: what one hiem process sends to a consumer at most
DELIVERY_CONCURRENCY = _sender_threads()
#: hiem serve's default HTTP worker threads (hiem serve --threads)
SERVER_THREADS = 16
SUBSCRIBE_CLIENTS = 32
#: what the fan-out benchmarks change from hiem's defaults, and why: the benchmark has one consumer origin
#: for all N subscribers, and the default per-consumer limit (HIEM_CONSUMER_CONCURRENCY=4 per process) would
#: measure that limit, not the broker (its cost is measured separately: "fanout_default_limit")
FANOUT_ENV = {"HIEM_CONSUMER_CONCURRENCY": str(max(64, 2 * DELIVERY_CONCURRENCY))}

FEVER = "nhin:GIPSE/Biosurveillance/Fever"          # publisher latency, 10 subscribers
INFLUENZA = "nhin:GIPSE/Biosurveillance/Influenza"  # publisher latency, many subscribers
RASH = "nhin:GIPSE/Biosurveillance/Rash"            # Subscribe throughput (never published to)
ILI = wsn.ILI                                       # fan-out


@dataclass
class Plan:
    """Sizes and durations of one run (default, --smoke, --large)."""

    name: str
    fanout_sizes: tuple[int, ...] = (1_000, 10_000)
    soap_subscribe_max: int = 1_000  # up to this many fan-out subscribers are created with real Subscribes
    fanout_timeout: float = 120.0
    baseline_seconds: float = 5.0
    subscribe_seconds: float = 5.0
    latency_samples: int = 200
    latency_small: int = 10
    latency_large: int = 10_000
    matching_sizes: tuple[int, ...] = (1_000, 1_000_000)
    matching_repeats: int = 15
    default_limit_n: int = 200
    default_limit_timeout: float = 30.0
    options_subscribers: int = 200
    options_notifications: int = 3
    options_timeout: float = 60.0
    modes: tuple[str, ...] = ("embedded", "distributed")
    option_modes: tuple[str, ...] = ("distributed",)
    profile_seconds: float = 0.0
    profile_n: int = 10_000


PLANS = {
    "default": Plan("default"),
    "large": Plan("large", fanout_sizes=(1_000, 10_000, 100_000), fanout_timeout=900.0),
    "smoke": Plan("smoke", fanout_sizes=(200,), soap_subscribe_max=200, fanout_timeout=90.0, baseline_seconds=1.0,
                  subscribe_seconds=1.0, latency_samples=10, latency_large=200, matching_sizes=(1_000, 10_000),
                  matching_repeats=5, default_limit_n=20, default_limit_timeout=30.0, options_subscribers=20,
                  options_notifications=2, options_timeout=60.0),
}


@dataclass
class Context:
    plan: Plan
    tmp: Path
    out: Path
    log: Callable[[str], None]
    results: dict[str, Any] = field(default_factory=dict)

    def baseline(self, key: str) -> float | None:
        entry = self.results.get("baselines", {}).get(key) or {}
        return entry.get("per_second")


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value and base else None


# -- baselines ---------------------------------------------------------------------------------------------
def baselines(ctx: Context) -> dict[str, Any]:
    plan, tmp = ctx.plan, ctx.tmp / "baselines"
    tmp.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {}
    with harness.consumer(tmp) as consumer_url:
        notify = load.delivered_notify(consumer_url, tmp)
        load.aiohttp_post(consumer_url, notify.body, notify.headers, DELIVERY_CONCURRENCY, 0.5)  # warm up
        meter = CpuMeter({}).start()
        found["a_aiohttp"] = {**load.aiohttp_post(consumer_url, notify.body, notify.headers, DELIVERY_CONCURRENCY,
                                                  plan.baseline_seconds),
                              "concurrency": DELIVERY_CONCURRENCY, "body_bytes": len(notify.body),
                              "signed": notify.signed,
                              "cpu": meter.stop()}
        ctx.log(f"  (a)  aiohttp -> consumer: {found['a_aiohttp']['per_second']:,.0f} POST/s")
        if load.wrk_available():
            found["a_wrk"] = {**load.wrk_post(consumer_url, notify.body, notify.headers,
                                              connections=DELIVERY_CONCURRENCY, threads=2,
                                              duration=plan.baseline_seconds, tmp=tmp),
                              "concurrency": DELIVERY_CONCURRENCY}
            ctx.log(f"  (a') wrk -> consumer: {found['a_wrk']['per_second']:,.0f} POST/s")
        else:
            found["a_wrk"] = {"skipped": "wrk is not installed (apt-get install wrk; scripts/system-deps.sh)"}
            ctx.log("  (a') skipped: wrk is not installed")
    with harness.hello_server(tmp, SERVER_THREADS) as hello_url:
        body = load.subscribe_envelope("http://127.0.0.1:1", "http://127.0.0.1:9/notify", RASH)
        if load.wrk_available():
            found["b_hello"] = {**load.wrk_post(hello_url, body, load.soap12_headers("Subscribe"),
                                                connections=SUBSCRIBE_CLIENTS, threads=2,
                                                duration=plan.baseline_seconds, tmp=tmp),
                                "client": "wrk", "concurrency": SUBSCRIBE_CLIENTS, "threads": SERVER_THREADS}
        else:
            found["b_hello"] = {**load.aiohttp_post(hello_url, body, load.soap12_headers("Subscribe"),
                                                    SUBSCRIBE_CLIENTS, plan.baseline_seconds),
                                "client": "aiohttp", "concurrency": SUBSCRIBE_CLIENTS, "threads": SERVER_THREADS}
        ctx.log(f"  (b)  hello WSGI on cheroot ({found['b_hello']['client']}): "
                f"{found['b_hello']['per_second']:,.0f} req/s")
    return found


def signing_floor(ctx: Context) -> dict[str, Any]:
    """Baseline (s) with the broker's RSA-2048 key (the dev identity (a)'s body is signed with) and with an EC
    P-256 key; each against (a) and (a') when this run measured them. Its own consumer, same code as (a)'s."""
    from bench import signing_floor as floor

    tmp = ctx.tmp / "baselines"  # where (a) made the dev identity: the same key
    tmp.mkdir(parents=True, exist_ok=True)
    # (a)'s requests in flight, shared among the processes
    concurrency = max(1, DELIVERY_CONCURRENCY // floor.cores())
    found: dict[str, Any] = {}
    with harness.consumer(tmp) as consumer_url:
        for key, elliptic in (("s_rsa2048", False), ("s_ec_p256", True)):
            material, sample = floor.hiem_material(tmp, consumer_url, elliptic)
            entry = floor.measure(material, consumer_url, seconds=ctx.plan.baseline_seconds, tmp=tmp,
                                  concurrency=concurrency, roles={"consumer": harness.CONSUMER_PIDS[consumer_url]},
                                  reference=sample)
            entry["ratio_a"] = ratio(entry["per_second"], ctx.baseline("a_aiohttp"))
            entry["ratio_a_wrk"] = ratio(entry["per_second"], ctx.baseline("a_wrk"))
            found[key] = entry
            ctx.log(f"  (s)  signing floor, {entry['key']}, {entry['processes']} processes: "
                    f"{entry['per_second']:,.0f}/s, {entry['cpu_ms_per_delivery']['senders']} CPU ms per delivery "
                    f"(ratio to (a) {entry['ratio_a']}, to (a') {entry['ratio_a_wrk']})")
    return found


# -- one broker deployment -----------------------------------------------------------------------------------
@contextlib.contextmanager
def deployment(ctx: Context, mode: str, name: str, **env: str):  # type: ignore[no-untyped-def]
    """A consumer plus a broker (and its own database); everything is stopped and dropped afterwards."""
    tmp = ctx.tmp / f"{mode}-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        consumer_url = stack.enter_context(harness.consumer(tmp))
        database_url = stack.enter_context(harness.fresh_postgres()) if mode == "distributed" else None
        broker = harness.start_broker(mode, tmp, database_url=database_url, **env)
        stack.callback(broker.stop)
        table = harness.DeliveryTable(broker.database_url)
        stack.callback(table.close)
        yield broker, consumer_url, table


def roles(broker: harness.Broker, consumer_pid: int | None = None) -> dict[str, int]:
    found = broker.pids()
    if consumer_pid:
        found["consumer"] = consumer_pid
    return found


def database_name(broker: harness.Broker) -> str | None:
    return broker.database_url.rsplit("/", 1)[1] if broker.mode == "distributed" else None


def subscribe_soap(broker: harness.Broker, consumer_url: str, count: int, topic: str) -> dict[str, Any]:
    result = load.subscribe_load(broker.url, consumer_url, concurrency=SUBSCRIBE_CLIENTS, count=count, topic=topic)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} Subscribe requests failed: {result}")
    return result


def ensure_subscribers(broker: harness.Broker, consumer_url: str, topic: str, have: int, want: int,
                       soap_max: int) -> dict[str, Any]:
    """Bring ``topic`` from ``have`` to ``want`` subscribers: real Subscribes up to ``soap_max``, SQL clones
    of the last one beyond that."""
    info: dict[str, Any] = {}
    by_soap = max(0, min(want, soap_max) - have) if have < soap_max else 0
    if have == 0 and by_soap == 0:
        by_soap = 1  # a template for the clones
    if by_soap:
        info["soap"] = subscribe_soap(broker, consumer_url, by_soap, topic)
    cloned = want - have - by_soap
    if cloned > 0:
        info["sql_clone"] = population.clone_subscriptions(broker.database_url, cloned)
    return info


def publish(client: httpx.Client, broker: harness.Broker, topic: str) -> tuple[float, float]:
    """POST one Notify; returns (epoch time of the answer, answer latency in s)."""
    body = load.notify_envelope(broker.url, topic)
    started = time.perf_counter()
    response = client.post(broker.url + "/wsn/NotificationBroker", content=body, headers=load.soap12_headers("Notify"))
    elapsed = time.perf_counter() - started
    answered = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"Notify answered {response.status_code}: {response.text[:500]}")
    return answered, elapsed


def fanout_once(ctx: Context, broker: harness.Broker, consumer_url: str, table: harness.DeliveryTable, n: int,
                timeout: float, topic: str = ILI) -> dict[str, Any]:
    """One Notify to ``n`` subscribers: time from the publisher's answer to the last delivery recorded."""
    before = table.last_notification()
    sampler = harness.RssSampler(broker.pids())
    meter = CpuMeter(roles(broker, harness.CONSUMER_PIDS.get(consumer_url)), database_name(broker))
    pg = harness.PgConnections(broker.database_url) if broker.mode == "distributed" else None
    sampler.start()
    meter.start()
    if pg:
        pg.start()
    with httpx.Client(timeout=60) as client:
        answered, latency = publish(client, broker, topic)
    nid = table.last_notification()
    if nid <= before:
        raise RuntimeError("the Notify was answered but no notification row is there")
    waited = table.wait_all(nid, n, timeout)
    cpu = meter.stop()
    memory = sampler.stop()
    postgres = pg.stop() if pg else None
    times = table.times(nid)
    delivered = waited["states"].get("delivered", 0)
    if waited["done"] and times["last_delivered"]:
        seconds = times["last_delivered"] - answered
    else:
        seconds = time.time() - answered
    entry = {
        "n": n, "done": waited["done"], "states": waited["states"], "answer_ms": round(1000 * latency, 1),
        "seconds": round(seconds, 3), "deliveries_per_second": round(delivered / seconds, 1) if seconds > 0 else None,
        "fanout_done_s": _since(times["fanout_done"], answered), "first_delivery_s": _since(times["first_delivered"],
                                                                                            answered),
        **memory, "cpu": cpu,
    }
    if postgres:
        entry["postgres"] = postgres
    if delivered:
        per = {role: round(1000 * cores * cpu["wall_s"] / delivered, 2) for role, cores in cpu["cores_by_role"].items()
               if role != "bench"}
        entry["cpu_ms_per_delivery"] = {**per, "total": round(sum(per.values()), 2)}
    entry["ratio_a"] = ratio(entry["deliveries_per_second"], ctx.baseline("a_aiohttp"))
    entry["ratio_a_wrk"] = ratio(entry["deliveries_per_second"], ctx.baseline("a_wrk"))
    # the broker signs with the dev identity's RSA-2048 key: the floor with that key
    entry["ratio_s"] = ratio(entry["deliveries_per_second"], ctx.baseline("s_rsa2048"))
    return entry


def _since(value: float | None, origin: float) -> float | None:
    return round(value - origin, 3) if value else None


def latency(broker: harness.Broker, topic: str, samples: int) -> dict[str, Any]:
    """``samples`` Notifies one after the other (one keep-alive client): the publisher's answer time."""
    with httpx.Client(timeout=60) as client:
        for _ in range(3):
            publish(client, broker, topic)
        return percentiles([publish(client, broker, topic)[1] for _ in range(samples)])


def interleaved_latency(broker: harness.Broker, topics: dict[str, str], samples: int) -> dict[str, list[float]]:
    """Notifies to each of ``topics`` (label -> topic) in turn, ``samples`` per topic, one client; the
    answer times (s) per label, in the order taken.

    Why interleaved: every Notify to a topic with many subscribers starts a large fan-out, and on a small
    machine the publisher then shares the CPU with it. Taking the samples of both topics in turn puts them
    under the same background load, so what differs between them is only the work the answer itself does
    for more matching subscribers, which is the question (the answer means "recorded", not "fanned out").
    """
    times: dict[str, list[float]] = {label: [] for label in topics}
    with httpx.Client(timeout=60) as client:
        for topic in topics.values():
            publish(client, broker, topic)
        for _ in range(samples):
            for label, topic in topics.items():
                times[label].append(publish(client, broker, topic)[1])
    return times


def percentiles(seconds: list[float]) -> dict[str, Any]:
    times = sorted(seconds)

    def pct(p: float) -> float:
        return round(1000 * times[min(len(times) - 1, int(p * len(times)))], 2)

    return {"samples": len(times), "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": round(1000 * times[-1], 2), "mean_ms": round(1000 * sum(times) / len(times), 2)}


def subscribe_throughput(ctx: Context, broker: harness.Broker, consumer_url: str) -> dict[str, Any]:
    """32 concurrent clients sending Subscribe for a fixed time, the client that measured (b)."""
    meter = CpuMeter(roles(broker, harness.CONSUMER_PIDS.get(consumer_url)), database_name(broker)).start()
    base = ctx.results.get("baselines", {}).get("b_hello", {})
    if base.get("client") == "wrk":
        result = wrk_subscribe(broker, consumer_url, ctx.plan.subscribe_seconds, ctx.tmp)
    else:
        result = load.subscribe_load(broker.url, consumer_url, concurrency=SUBSCRIBE_CLIENTS,
                                     duration=ctx.plan.subscribe_seconds, topic=RASH)
        result["client"] = "aiohttp"
    result["cpu"] = meter.stop()
    result["concurrency"] = SUBSCRIBE_CLIENTS
    result["ratio_b"] = ratio(result["per_second"], base.get("per_second"))
    return result


def wrk_subscribe(broker: harness.Broker, consumer_url: str, seconds: float, tmp: Path) -> dict[str, Any]:
    """wrk with a Lua script that gives every Subscribe its own wsa:MessageID."""
    template = load.subscribe_envelope(broker.url, consumer_url, RASH).decode()
    import re

    template = re.sub(r"urn:uuid:[0-9a-f-]{36}", "MSGID", template)
    script = tmp / "wrk-subscribe.lua"
    headers = load.soap12_headers("Subscribe")
    script.write_text("\n".join([
        "local threads = {}",
        "local counter = 0",
        "function setup(thread) table.insert(threads, thread); thread:set('tid', #threads) end",
        "function init(args) counter = 0 end",
        f"local template = {json.dumps(template)}",
        'wrk.method = "POST"',
        *[f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in headers.items()],
        "function request()",
        "  counter = counter + 1",
        "  local id = string.format('urn:uuid:%08d-0000-4000-8000-%012d', tid, counter)",
        "  local body = string.gsub(template, 'MSGID', id)",
        "  return wrk.format(nil, nil, nil, body)",
        "end",
        "function done(summary, latency, requests)",
        '  io.write(string.format("BENCH %d %d %d %d %d\\n", summary.requests, summary.duration,',
        "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write"
        " + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))",
        "end",
    ]) + "\n")
    run = subprocess.run(["wrk", "-t", "2", "-c", str(SUBSCRIBE_CLIENTS), "-d", f"{max(1, round(seconds))}s", "-s",
                          str(script), broker.url + "/wsn/NotificationProducer"], capture_output=True, text=True,
                         timeout=seconds + 60, check=True)
    match = re.search(r"BENCH (\d+) (\d+) (\d+) (\d+) (\d+)", run.stdout)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{run.stdout}\n{run.stderr}")
    requests, micros, errors, p50, p99 = (int(g) for g in match.groups())
    return {"client": "wrk", "requests": requests, "errors": errors, "seconds": round(micros / 1e6, 3),
            "per_second": round(requests / (micros / 1e6), 1), "p50_ms": round(p50 / 1000, 2),
            "p99_ms": round(p99 / 1000, 2)}


def durability(ctx: Context) -> dict[str, Any]:
    """The cost of durable commits in embedded mode: SQLite synchronous=FULL (the default) against NORMAL,
    each on a broker of its own, one after the other in this run: Subscribe throughput (as a ratio to the
    same run's (b)) and the Notify answer with FEVER's subscribers."""
    found: dict[str, Any] = {}
    for sync in ("NORMAL", "FULL"):
        with deployment(ctx, "embedded", f"sync-{sync.lower()}", HIEM_SQLITE_SYNCHRONOUS=sync,
                        **FANOUT_ENV) as (broker, consumer_url, _table):
            subscribe = subscribe_throughput(ctx, broker, consumer_url)
            ensure_subscribers(broker, consumer_url, FEVER, 0, ctx.plan.latency_small, ctx.plan.latency_small)
            notify = latency(broker, FEVER, ctx.plan.latency_samples)
        found[sync] = {"subscribe": subscribe, "notify": notify}
        ctx.log(f"  synchronous={sync}: Subscribe {subscribe['per_second']:,.0f}/s (ratio to (b) "
                f"{subscribe['ratio_b']}), Notify answer p50/p99 {notify['p50_ms']}/{notify['p99_ms']} ms")
    full, normal = found["FULL"], found["NORMAL"]
    found["full_vs_normal"] = {
        "subscribe_throughput": ratio(full["subscribe"]["per_second"], normal["subscribe"]["per_second"]),
        "notify_p50": ratio(full["notify"]["p50_ms"], normal["notify"]["p50_ms"]),
        "notify_p99": ratio(full["notify"]["p99_ms"], normal["notify"]["p99_ms"]),
    }
    ctx.log(f"  FULL vs NORMAL: {found['full_vs_normal']}")
    return found


def subscribe_only(ctx: Context, mode: str) -> dict[str, Any]:
    """Subscribe throughput alone, on a broker of its own (``--only baselines,subscribe``)."""
    with deployment(ctx, mode, "subscribe", **FANOUT_ENV) as (broker, consumer_url, _table):
        found = subscribe_throughput(ctx, broker, consumer_url)
    ctx.log(f"  {mode}: Subscribe x{SUBSCRIBE_CLIENTS} clients: {found['per_second']:,.0f}/s "
            f"(ratio to (b) {found['ratio_b']})")
    return found


def mode_suite(ctx: Context, mode: str) -> dict[str, Any]:
    """Subscribe throughput, fan-out at each N, publisher latency: one broker, in that order."""
    plan = ctx.plan
    found: dict[str, Any] = {"env": FANOUT_ENV, "fanout": {}}
    with deployment(ctx, mode, "main", **FANOUT_ENV) as (broker, consumer_url, table):
        found["subscribe"] = subscribe_throughput(ctx, broker, consumer_url)
        ctx.log(f"  {mode}: Subscribe x{SUBSCRIBE_CLIENTS} clients: {found['subscribe']['per_second']:,.0f}/s "
                f"(ratio to (b) {found['subscribe']['ratio_b']})")
        have = 0
        for n in plan.fanout_sizes:
            setup = ensure_subscribers(broker, consumer_url, ILI, have, n, plan.soap_subscribe_max)
            have = n
            entry = fanout_once(ctx, broker, consumer_url, table, n, plan.fanout_timeout)
            entry["subscribers_created"] = setup
            found["fanout"][str(n)] = entry
            ctx.log(f"  {mode}: fan-out N={n:,}: {entry['seconds']:.1f}s, {entry['deliveries_per_second']:,.0f}/s "
                    f"(ratio to (a) {entry['ratio_a']}), done={entry['done']}, peak RSS "
                    f"{entry['peak_rss_mb']}")
    found["latency"] = publisher_latency(ctx, mode)
    return found


def ec_fanout(ctx: Context, mode: str) -> dict[str, Any]:
    """One fan-out (the largest size of the plan up to 10,000) by a broker whose signing key is EC P-256:
    the issue's ratio to (a), and the ratio to (s) with the same kind of key."""
    n = max([size for size in ctx.plan.fanout_sizes if size <= 10_000] or [min(ctx.plan.fanout_sizes)])
    key_path, cert_path = ec_identity(ctx.tmp / f"ec-identity-{mode}")
    with deployment(ctx, mode, "ec", **FANOUT_ENV, HIEM_SIGNING_KEY=str(key_path),
                    HIEM_SIGNING_CERT=str(cert_path)) as (broker, consumer_url, table):
        ensure_subscribers(broker, consumer_url, ILI, 0, n, 1)
        entry = fanout_once(ctx, broker, consumer_url, table, n, ctx.plan.fanout_timeout)
    entry["n"] = n
    entry["ratio_s"] = ratio(entry["deliveries_per_second"], ctx.baseline("s_ec_p256"))
    ctx.log(f"  {mode}: fan-out N={n:,} with an EC P-256 key: {entry['deliveries_per_second']:,.0f}/s "
            f"(ratio to (a) {entry['ratio_a']}, to (s) EC {entry['ratio_s']}), done={entry['done']}")
    return entry


def publisher_latency(ctx: Context, mode: str) -> dict[str, Any]:
    """Notify answer times with few and with many matching subscribers (its own broker).

    First the few-subscriber topic alone (the machine otherwise idle), then both topics interleaved (the
    comparison: same background load). Noise is measured the same way: the interleaved few-subscriber
    samples split into their first and second halves, whose p50s and p99s differ by chance alone.
    """
    plan = ctx.plan
    small_n, large_n = str(plan.latency_small), str(plan.latency_large)
    found: dict[str, Any] = {}
    with deployment(ctx, mode, "latency", **FANOUT_ENV) as (broker, consumer_url, _table):
        ensure_subscribers(broker, consumer_url, FEVER, 0, plan.latency_small, plan.latency_small)
        meter = CpuMeter(roles(broker), database_name(broker)).start()
        found["idle"] = {small_n: latency(broker, FEVER, plan.latency_samples)}
        found["idle"][small_n]["cpu"] = meter.stop()
        ensure_subscribers(broker, consumer_url, INFLUENZA, 0, plan.latency_large, 1)
        meter = CpuMeter(roles(broker), database_name(broker)).start()
        both = interleaved_latency(broker, {small_n: FEVER, large_n: INFLUENZA}, plan.latency_samples)
        cpu = meter.stop()
    small, large = percentiles(both[small_n]), percentiles(both[large_n])
    found[small_n], found[large_n] = small, {**large, "cpu": cpu}
    found["p50_ratio"] = ratio(large["p50_ms"], small["p50_ms"])
    found["p99_ratio"] = ratio(large["p99_ms"], small["p99_ms"])
    found["noise"] = latency_noise(both[small_n])
    ctx.log(f"  {mode}: Notify answer p50/p99, idle with {small_n} subscribers {found['idle'][small_n]['p50_ms']}/"
            f"{found['idle'][small_n]['p99_ms']} ms; interleaved: {small_n} {small['p50_ms']}/{small['p99_ms']} ms, "
            f"{int(large_n):,} {large['p50_ms']}/{large['p99_ms']} ms (ratios {found['p50_ratio']}/"
            f"{found['p99_ratio']}, noise {found['noise']['p50_spread']}/{found['noise']['p99_spread']})")
    return found


def latency_noise(seconds: list[float]) -> dict[str, Any]:
    """How far apart p50 and p99 of the first and second half of one series are (>= 1.0; 1.0 = identical)."""
    middle = len(seconds) // 2
    first, second = percentiles(seconds[:middle]), percentiles(seconds[middle:])
    return {"p50_spread": spread(first["p50_ms"], second["p50_ms"]),
            "p99_spread": spread(first["p99_ms"], second["p99_ms"]), "halves": [first, second]}


def spread(a: float, b: float) -> float | None:
    if not a or not b:
        return None
    return round(max(a, b) / min(a, b), 3)


def default_limit(ctx: Context, mode: str) -> dict[str, Any]:
    """The same fan-out with hiem's defaults untouched: HIEM_CONSUMER_CONCURRENCY=4 per process, one consumer."""
    plan = ctx.plan
    with deployment(ctx, mode, "default-limit") as (broker, consumer_url, table):
        ensure_subscribers(broker, consumer_url, ILI, 0, plan.default_limit_n, plan.soap_subscribe_max)
        entry = fanout_once(ctx, broker, consumer_url, table, plan.default_limit_n, plan.default_limit_timeout)
    ctx.log(f"  {mode}: fan-out N={plan.default_limit_n:,} with the default per-consumer limit: "
            f"{entry['deliveries_per_second']:,.0f}/s (done={entry['done']})")
    return entry


# -- options: ordered delivery, audit shipping ---------------------------------------------------------------
class UdpSink(threading.Thread):
    """A syslog (RFC 5426) receiver that counts datagrams."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="udp-sink")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.sock.recv(65536)
                self.count += 1
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)
        self.sock.close()


def option_run(ctx: Context, mode: str, name: str, audit_sink: UdpSink | None = None, **env: str) -> dict[str, Any]:
    """M Notifies back to back to N subscribers; time from the first answer to the last delivery."""
    plan = ctx.plan
    n, m = plan.options_subscribers, plan.options_notifications
    with deployment(ctx, mode, name, **FANOUT_ENV, **env) as (broker, consumer_url, table):
        ensure_subscribers(broker, consumer_url, ILI, 0, n, n)
        before = table.last_notification()
        meter = CpuMeter(roles(broker), database_name(broker)).start()
        pg = harness.PgConnections(broker.database_url) if broker.mode == "distributed" else None
        if pg:
            pg.start()
        with httpx.Client(timeout=60) as client:
            first = None
            for _ in range(m):
                answered, _latency = publish(client, broker, ILI)
                first = first or answered
        deadline = time.monotonic() + plan.options_timeout
        delivered = 0
        while time.monotonic() < deadline:
            delivered = table.scalar("SELECT count(*) FROM deliveries WHERE notification_id > ? AND state = "
                                     "'delivered'", before) or 0
            if delivered >= n * m:
                break
            time.sleep(0.05)
        last = harness.epoch(table.scalar("SELECT max(delivered_at) FROM deliveries WHERE notification_id > ?",
                                          before))
        done = delivered >= n * m
        seconds = (last - first) if done and last else time.time() - first  # type: ignore[operator]
        entry: dict[str, Any] = {"n": n, "notifications": m, "delivered": delivered, "done": done,
                                 "seconds": round(seconds, 3),
                                 "deliveries_per_second": round(delivered / seconds, 1), "env": env}
        if audit_sink is not None:
            while time.monotonic() < deadline:
                left = table.scalar("SELECT count(*) FROM audit_records WHERE shipped_at IS NULL")
                if left == 0:
                    break
                time.sleep(0.1)
            shipped_at = harness.epoch(table.scalar("SELECT max(shipped_at) FROM audit_records"))
            entry["audit_records"] = table.scalar("SELECT count(*) FROM audit_records")
            entry["audit_unshipped"] = table.scalar("SELECT count(*) FROM audit_records WHERE shipped_at IS NULL")
            entry["audit_all_shipped_s"] = _since(shipped_at, first)  # type: ignore[arg-type]
            entry["syslog_datagrams_received"] = audit_sink.count
        entry["cpu"] = meter.stop()
        if pg:
            entry["postgres"] = pg.stop()
        entry["states"] = dict(table.query("SELECT state, count(*) FROM deliveries WHERE notification_id > ? "
                                           "GROUP BY state", before))
    return entry


def options(ctx: Context, mode: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    found["baseline"] = option_run(ctx, mode, "opt-base")
    found["ordered"] = option_run(ctx, mode, "opt-ordered", HIEM_ORDERED_DELIVERY="1")
    found["ordered"]["cost_ratio"] = ratio(found["ordered"]["seconds"], found["baseline"]["seconds"])
    sink = UdpSink()
    sink.start()
    try:
        found["audit_shipping"] = option_run(ctx, mode, "opt-audit", audit_sink=sink, HIEM_AUDIT_TRANSPORT="udp",
                                             HIEM_AUDIT_HOST="127.0.0.1", HIEM_AUDIT_PORT=str(sink.port))
    finally:
        sink.stop()
    found["audit_shipping"]["cost_ratio"] = ratio(found["audit_shipping"]["seconds"], found["baseline"]["seconds"])
    base = found["baseline"]
    ctx.log(f"  {mode}: {base['notifications']} Notifies x {base['n']} subscribers: {base['seconds']:.1f}s; "
            f"ordered {found['ordered']['seconds']:.1f}s (x{found['ordered']['cost_ratio']}); audit shipping "
            f"{found['audit_shipping']['seconds']:.1f}s (x{found['audit_shipping']['cost_ratio']})")
    return found


def ec_identity(directory: Path) -> tuple[Path, Path]:
    """A self-signed EC P-256 key and certificate for the broker, as files (what an operator may sign with
    instead of RSA-2048: one ECDSA signature costs a small fraction of an RSA one)."""
    from hiem.security.devkeys import self_signed_identity

    directory.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = self_signed_identity("hiem bench broker (EC P-256)", elliptic=True, days=2)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    cert_path.write_bytes(cert_pem)
    return key_path, cert_path


# -- profile ------------------------------------------------------------------------------------------------
def profile(ctx: Context, mode: str) -> dict[str, Any]:
    """py-spy on the process that delivers (a worker, or the embedded web process) during a fan-out:
    once sampling only threads that hold the GIL (where the CPU goes), once all threads (where the time goes)."""
    from bench import profiling

    spy = profiling.py_spy()
    if not spy:
        return {"skipped": "py-spy is not installed (pip install py-spy==0.4.3)"}
    plan = ctx.plan
    found: dict[str, Any] = {}
    with deployment(ctx, mode, "profile", **FANOUT_ENV) as (broker, consumer_url, table):
        ensure_subscribers(broker, consumer_url, ILI, 0, plan.profile_n, plan.soap_subscribe_max)
        target = broker.workers[0] if broker.workers else broker.web
        with httpx.Client(timeout=60) as client:
            publish(client, broker, ILI)
        time.sleep(1.0)  # past the fan-out's first second (matching, enqueueing)
        for kind in ("gil", "wall"):
            raw = ctx.out / f"profile-{mode}-{kind}.txt"
            pid = target.proc.pid  # type: ignore[union-attr]
            if kind == "wall" and broker.workers:
                pid = psutil.Process(pid).children()[0].pid  # one pool child: all its threads
            try:
                profiling.record(spy, pid, raw, plan.profile_seconds, gil=(kind == "gil"))
                found[kind] = {**profiling.summarize(raw), "raw": raw.name}
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                found[kind] = {"skipped": f"py-spy failed: {exc!r}"[:300]}
        found["delivered_meanwhile"] = table.states(table.last_notification())
    ctx.log(f"  {mode}: profile written ({ctx.out}/profile-{mode}-*.txt)")
    return found

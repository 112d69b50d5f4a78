"""Turning a results dict into targets, a markdown table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RSS_LIMIT_MB = 300.0
RSS_FLAT_RATIO = 1.3
#: publisher latency counts as "the same" up to this ratio even when two halves of one series agree better
LATENCY_TOLERANCE = 1.2
#: an operator read "independent of history size": 500 times the rows may cost at most this much more
READS_FLAT_RATIO = 1.5
#: issue 16's targets: fan-out against the signing floor (s) with the same RSA-2048 key, per mode; with an
#: EC P-256 broker key against (a); Subscribe against (b)
FANOUT_VS_S = {"distributed": 0.7, "embedded": 0.5}
EC_FANOUT_VS_A = 0.25
SUBSCRIBE_VS_B = 0.25
OPERATOR_READS = (("metrics", "/metrics scrape"), ("ops_overview", "/ops overview page"),
                  ("snapshot", "hiem status numbers (stats.snapshot, in process)"),
                  ("status_cli", "hiem status --json (a new process)"))


def server_versions() -> dict[str, str | None]:
    from bench import harness

    found: dict[str, str | None] = {"postgresql": None, "redis": None}
    try:
        import psycopg

        with psycopg.connect(harness.POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://"),
                             connect_timeout=3) as conn:
            found["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except Exception:  # a missing server is reported elsewhere
        pass
    try:
        import redis

        found["redis"] = redis.Redis.from_url(harness.REDIS_URL, socket_connect_timeout=3).info("server")[
            "redis_version"]
    except Exception:
        pass
    return found


def memory_summary(fanout: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS per process role at each N, whether it stays under the limit, and 100k/10k flatness."""
    by_n = {n: {"peak_rss_mb": e.get("peak_rss_mb", {}), "peak_tree_rss_mb": e.get("peak_tree_rss_mb", {})}
            for n, e in fanout.items() if isinstance(e, dict)}
    found: dict[str, Any] = {"by_n": by_n}
    if "10000" in by_n and "100000" in by_n:
        small, large = by_n["10000"]["peak_rss_mb"], by_n["100000"]["peak_rss_mb"]
        found["ratio_100k_to_10k"] = {role: round(large[role] / small[role], 3) for role in large
                                      if small.get(role)}
    if by_n:
        largest = by_n[max(by_n, key=int)]["peak_rss_mb"]
        found["max_process_rss_mb"] = max(largest.values()) if largest else None
    return found


def _target(name: str, value: float | None, target: str, met: bool | None) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "met": met}


def targets(results: dict[str, Any], plan: Any) -> list[dict[str, Any]]:
    found = []
    for mode, by_n in results.get("fanout", {}).items():
        wanted = FANOUT_VS_S.get(mode)
        for n, entry in by_n.items():
            if wanted is not None and isinstance(entry, dict) and "ratio_s" in entry:
                value = entry["ratio_s"]
                found.append(_target(f"fan-out {mode} N={int(n):,}: deliveries/s vs (s), RSA-2048", value,
                                     f">= {wanted}", None if value is None else
                                     value >= wanted and entry.get("done", False)))
    for mode, entry in results.get("fanout_ec", {}).items():
        if isinstance(entry, dict) and "ratio_a" in entry:
            value = entry["ratio_a"]
            found.append(_target(f"fan-out {mode} N={entry['n']:,}, EC P-256 broker key: deliveries/s vs (a)",
                                 value, f">= {EC_FANOUT_VS_A}", None if value is None else
                                 value >= EC_FANOUT_VS_A and entry.get("done", False)))
    signing = results.get("signing") or {}
    s_floor = (results.get("baselines", {}).get("s_rsa2048") or {}).get("per_second")
    if signing.get("ceiling_private_key_ops_per_second") and s_floor:
        # information, not a target: how far (s) itself is from the bare private-key operations
        value = round(s_floor / signing["ceiling_private_key_ops_per_second"], 3)
        found.append(_target(f"(s) against its bound, {signing['private_key_ops_per_notify']} {signing['key']} "
                             f"signature per delivery on {signing['cores']} cores doing nothing else", value,
                             "information", None))
    for mode, entry in results.get("subscribe", {}).items():
        if isinstance(entry, dict) and "ratio_b" in entry:
            value = entry["ratio_b"]
            found.append(_target(f"Subscribe {mode} x32 clients vs (b)", value, f">= {SUBSCRIBE_VS_B}",
                                 value is not None and value >= SUBSCRIBE_VS_B))
    for mode, lat in results.get("publisher_latency", {}).items():
        noise = lat.get("noise") if isinstance(lat, dict) else None
        if not noise:
            continue
        for stat in ("p50", "p99"):
            value, band = lat.get(f"{stat}_ratio"), max(LATENCY_TOLERANCE, noise.get(f"{stat}_spread") or 0)
            found.append(_target(f"Notify answer {stat} {mode}, many / few matching (interleaved)", value,
                                 f"<= {band:.2f} (noise: the few-subscriber series' halves, at least "
                                 f"{LATENCY_TOLERANCE})", value is not None and value <= band))
    for database, entry in results.get("matching", {}).items():
        if isinstance(entry, dict) and "ratio" in entry:
            sizes = sorted(int(s) for s in entry.get("sizes", {}))
            label = f"{sizes[-1]:,}/{sizes[0]:,}" if sizes else ""
            found.append(_target(f"matching {database} {label} subscriptions, time ratio", entry["ratio"], "< 2",
                                 entry["ratio"] is not None and entry["ratio"] < 2))
    reads = results.get("operator_reads") or {}
    for key, label in OPERATOR_READS if reads.get("ratio") else ():
        sizes = sorted(int(s) for s in reads["sizes"])
        found.append(_target(f"{label} p50, {sizes[-1]:,}/{sizes[0]:,} delivery rows", reads["ratio"][key],
                             f"< {READS_FLAT_RATIO}", reads["ratio"][key] < READS_FLAT_RATIO))
    for mode, memory in results.get("memory", {}).items():
        if not isinstance(memory, dict) or not memory.get("by_n"):
            continue
        found.append(_target(f"peak RSS {mode} (largest N, any process), MB", memory.get("max_process_rss_mb"),
                             f"< {RSS_LIMIT_MB:.0f}", (memory.get("max_process_rss_mb") or 0) < RSS_LIMIT_MB))
        if "ratio_100k_to_10k" in memory:
            worst = max(memory["ratio_100k_to_10k"].values())
            found.append(_target(f"peak RSS {mode} 100k/10k (worst process)", worst, f"< {RSS_FLAT_RATIO}",
                                 worst < RSS_FLAT_RATIO))
    return found + fanout_concurrency_targets(results.get("fanout_concurrency") or {})


def fanout_concurrency_targets(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's two targets for fan-outs side by side (bench/fanout_concurrency.py), worded as it words them."""
    targets = []
    small = found.get("small_during_big") or {}
    created = small.get("being_created") or {}
    if small and created.get("samples"):
        p99 = round(created["p99_ms"] / 1000, 3)
        # fewer than asked were published while the big fan-out was being created: not measured as asked
        met = None if created["samples"] < small["small_notifies"] else p99 <= 1.0
        targets.append(_target(
            f"a {small['small_subscribers']}-subscriber notification published while a {small['big']:,}-subscriber "
            f"fan-out is being created reaches its consumers within 1 s (p99 of {created['samples']} such, "
            f"distributed), s; bound: {small['bound']}", p99, "<= 1", met))
    scaling = found.get("process_scaling") or {}
    if scaling.get("ratio") is not None:
        targets.append(_target(
            f"distributed, 2 worker processes / 1 ({scaling['worker_concurrency']} Celery children each), "
            f"delivered/s of a {scaling['n']:,}-subscriber fan-out; bound: {scaling['bound']['verdict']}",
            scaling["ratio"], ">= 1.7", scaling["ratio"] >= 1.7))
    return targets


def fanout_concurrency_rows(found: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Table rows (benchmark, mode, N, result, baseline, ratio, other CPU) for bench/fanout_concurrency.py."""
    rows: list[tuple[Any, ...]] = []
    small = found.get("small_during_big") or {}
    if small.get("samples"):
        big = small["big_fanout"]
        labels = {"being_created": "while the big fan-out is being created", "inserting": "of those, while its "
                  "rows were inserted", "enqueueing": "of those, while its deliveries were enqueued", "all": "all"}
        for key, label in labels.items():
            entry = small[key]
            if entry.get("samples"):
                rows.append((f"small Notify ({small['small_subscribers']} subscribers) publish -> last arrival, "
                             f"p50 / p99, {label} ({entry['samples']} Notifies, {entry['incomplete']} incomplete)",
                             "distributed", _fmt(small["big"]), f"{_fmt(entry['p50_ms'])} / {_fmt(entry['p99_ms'])} ms",
                             "", "", _fmt(small["cpu"].get("other_cores"))))
        rows.append((f"the big fan-out: rows committed / all enqueued, after its Notify; small Notifies per "
                     f"phase {small['phases']}", "distributed", _fmt(small["big"]),
                     f"{_fmt(big.get('committed_s'))} / {_fmt(big.get('all_enqueued_s'))} s", "", "", "-"))
    for mode, filters in (found.get("filters") or {}).items():
        for key, label in (("without_filters", "no filters"),
                           ("with_filters", "XPath filters on half, half of those match")):
            entry = filters.get(key) or {}
            if "failed" in entry:
                rows.append((f"fan-out, {label}", mode, _fmt(filters["n"]), f"FAILED: {entry['failed']}", "", "",
                             "-"))
            elif "seconds" in entry:
                done = "" if entry.get("done") else " (NOT DONE)"
                creation = entry.get("creation") or {}
                rows.append((f"fan-out, {label}: delivered/s; rows committed / all enqueued after the Notify", mode,
                             _fmt(filters["n"]), f"{_fmt(entry['deliveries_per_second'])}/s "
                             f"({_fmt(entry['states'].get('delivered', 0))} delivered){done}; "
                             f"{_fmt(creation.get('committed_s'))} / {_fmt(creation.get('all_enqueued_s'))} s",
                             "no filters" if key == "with_filters" else "",
                             _fmt(filters.get("delivered_per_second_ratio")) if key == "with_filters" else "",
                             _fmt(entry["cpu"].get("other_cores"))))
    scaling = found.get("process_scaling") or {}
    for entry in scaling.get("runs", []):
        rows.append((f"fan-out, {entry['worker_processes']} worker process(es) x {scaling['worker_concurrency']} "
                     f"children: delivered/s (busy cores of the machine)", "distributed", _fmt(scaling["n"]),
                     f"{_fmt(entry['deliveries_per_second'])}/s ({_fmt(entry['cpu']['machine_busy_cores'])})",
                     "", "", _fmt(entry["cpu"].get("other_cores"))))
    if scaling.get("ratio") is not None:
        rows.append(("fan-out, 2 / 1 worker processes (medians)", "distributed", _fmt(scaling["n"]), "",
                     "1 process", _fmt(scaling["ratio"]), ""))
    return rows


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text}{unit}"


def markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    lines = [f"# hiem benchmark {meta.get('date', '')} ({meta.get('plan', '')})", "",
             f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('memory_gb', '?')} GB; "
             f"Python {machine.get('python', '?')}; PostgreSQL {meta.get('servers', {}).get('postgresql')}, "
             f"Redis {meta.get('servers', {}).get('redis')}; code {meta.get('code_sha256', '?')}; "
             f"load average at start {machine.get('load_average_at_start')}; took {meta.get('duration_s')} s", "",
             "| benchmark | mode | N | result | baseline | ratio | other CPU (cores) |",
             "|---|---|---|---|---|---|---|"]
    base = results.get("baselines", {})

    def row(*cells: Any) -> None:
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")

    def other(entry: dict[str, Any]) -> str:
        cpu = entry.get("cpu") or {}
        return _fmt(cpu.get("other_cores"))

    a, a_wrk, b = (base.get(k, {}).get("per_second") for k in ("a_aiohttp", "a_wrk", "b_hello"))
    if a:
        row("(a) aiohttp POST loop -> consumer", "-", "-", f"{_fmt(a)} POST/s", "", "", other(base["a_aiohttp"]))
    if a_wrk:
        row("(a') wrk -> consumer", "-", "-", f"{_fmt(a_wrk)} POST/s", "", "", "-")
    for key in ("s_rsa2048", "s_ec_p256"):
        floor = base.get(key) or {}
        if floor.get("per_second"):
            cpu_ms = floor.get("cpu_ms_per_delivery") or {}
            row(f"(s) signing floor, {floor['key']} (lxml, hashlib, cryptography, aiohttp; "
                f"{floor['processes']} processes)", "-", "-",
                f"{_fmt(floor['per_second'])}/s (p50/p99 {_fmt(floor['p50_ms'])}/{_fmt(floor['p99_ms'])} ms); "
                f"CPU per delivery {_fmt(cpu_ms.get('senders'))} ms + consumer {_fmt(cpu_ms.get('consumer'))} ms "
                f"(build and sign {_fmt(floor.get('build_sign_cpu_ms'))} ms)", "(a) / (a')",
                f"{_fmt(floor.get('ratio_a'))} / {_fmt(floor.get('ratio_a_wrk'))}", other(floor))
    if b:
        row(f"(b) hello WSGI, cheroot ({base['b_hello'].get('client')})", "-", "-", f"{_fmt(b)} req/s", "", "", "-")
    for mode, entry in results.get("subscribe", {}).items():
        if "per_second" in entry:
            row("Subscribe, 32 clients", mode, "-", f"{_fmt(entry['per_second'])}/s (p99 {_fmt(entry['p99_ms'])} ms)",
                "(b)", _fmt(entry.get("ratio_b")), other(entry))
        else:
            row("Subscribe, 32 clients", mode, "-", entry.get("skipped", "-"), "", "", "")
    for mode, by_n in results.get("fanout", {}).items():
        if "skipped" in by_n:
            row("fan-out", mode, "-", by_n["skipped"], "", "", "")
            continue
        for n, entry in by_n.items():
            done = "" if entry.get("done") else " (NOT DONE: timed out)"
            row("fan-out: answer -> last delivery", mode, _fmt(int(n)),
                f"{_fmt(entry['seconds'])} s, {_fmt(entry['deliveries_per_second'])}/s{done}", "(a) / (a') / (s)",
                f"{_fmt(entry.get('ratio_a'))} / {_fmt(entry.get('ratio_a_wrk'))} / {_fmt(entry.get('ratio_s'))}",
                other(entry))
    for mode, entry in results.get("fanout_ec", {}).items():
        if isinstance(entry, dict) and "seconds" in entry:
            done = "" if entry.get("done") else " (NOT DONE: timed out)"
            row("fan-out, broker key EC P-256", mode, _fmt(entry["n"]),
                f"{_fmt(entry['seconds'])} s, {_fmt(entry['deliveries_per_second'])}/s{done}", "(a) / (s) EC P-256",
                f"{_fmt(entry.get('ratio_a'))} / {_fmt(entry.get('ratio_s'))}", other(entry))
    for mode, entry in results.get("fanout_default_limit", {}).items():
        if isinstance(entry, dict) and "seconds" in entry:
            done = "" if entry.get("done") else " (NOT DONE: timed out)"
            row("fan-out, default HIEM_CONSUMER_CONCURRENCY=4", mode, _fmt(entry["n"]),
                f"{_fmt(entry['seconds'])} s, {_fmt(entry['deliveries_per_second'])}/s{done}", "(a)",
                _fmt(entry.get("ratio_a")), other(entry))
    for mode, lat in results.get("publisher_latency", {}).items():
        if "skipped" in lat:
            continue
        for n, entry in (lat.get("idle") or {}).items():
            row("Notify answer p50 / p99, alone", mode, _fmt(int(n)) + " matching",
                f"{_fmt(entry['p50_ms'])} / {_fmt(entry['p99_ms'])} ms", "", "", other(entry))
        for n, entry in lat.items():
            if isinstance(entry, dict) and n.isdigit():
                row("Notify answer p50 / p99, interleaved", mode, _fmt(int(n)) + " matching",
                    f"{_fmt(entry['p50_ms'])} / {_fmt(entry['p99_ms'])} ms", "", "", other(entry))
        noise = lat.get("noise") or {}
        row("Notify answer, many / few matching (p50 / p99)", mode, "", "", "same series, two halves: "
            f"{_fmt(noise.get('p50_spread'))} / {_fmt(noise.get('p99_spread'))}",
            f"{_fmt(lat.get('p50_ratio'))} / {_fmt(lat.get('p99_ratio'))}", "")
    for database, entry in results.get("matching", {}).items():
        if not isinstance(entry, dict) or "sizes" not in entry:
            continue
        for n, size in entry["sizes"].items():
            extra = ""
            if "parallel_query_on" in size:
                extra = f" (PostgreSQL's default parallel query: {_fmt(size['parallel_query_on']['median_ms'])} ms)"
            row(f"matching: fan_out INSERT..SELECT, {entry['probe_matches']} matches", database, _fmt(int(n)),
                f"{_fmt(size['median_ms'])} ms{extra}", "", "", "-")
        ratio_text = _fmt(entry.get("ratio"))
        if entry.get("ratio_parallel_query_on") is not None:
            ratio_text += f" (PostgreSQL's default parallel query: {_fmt(entry['ratio_parallel_query_on'])})"
        row("matching: largest / smallest", database, "", "", "", ratio_text, "")
    for mode, memory in results.get("memory", {}).items():
        for n, by in memory.get("by_n", {}).items():
            peaks = ", ".join(f"{role} {_fmt(mb)}" for role, mb in by["peak_rss_mb"].items())
            row("peak RSS during fan-out (MB, largest process)", mode, _fmt(int(n)), peaks, "", "", "")
    for mode, opts in results.get("options", {}).items():
        if not isinstance(opts, dict) or "baseline" not in opts:
            continue
        base_opt = opts["baseline"]
        shape = f"{base_opt['notifications']}x{base_opt['n']}"
        row("M Notifies x N subscribers (defaults)", mode, shape, f"{_fmt(base_opt['seconds'])} s", "", "1",
            other(base_opt))
        # older results files also hold "ec_p256_key", now measured as its own fan-out (fanout_ec)
        for key, label in (("ordered", "HIEM_ORDERED_DELIVERY=1"), ("audit_shipping", "audit shipping on (UDP)"),
                           ("ec_p256_key", "broker signing key EC P-256 instead of RSA-2048")):
            entry = opts.get(key, {})
            if "seconds" in entry:
                done = "" if entry.get("done") else " (NOT DONE)"
                row(label, mode, shape, f"{_fmt(entry['seconds'])} s{done}", "defaults", _fmt(entry.get("cost_ratio")),
                    other(entry))
    signing = results.get("signing") or {}
    if signing.get("measured"):
        row("signing one Notify (CPU ms, in-process)", "-", "-",
            f"build {_fmt(signing['build_unsigned_ms'])} ms unsigned, {_fmt(signing['build_signed_ms'])} ms signed "
            f"(of which minting the assertion {_fmt(signing.get('mint_assertion_ms'))} ms); "
            f"{_fmt(signing['unsigned_bytes'])} -> {_fmt(signing['signed_bytes'])} bytes; verifying one inbound "
            f"{_fmt(signing.get('verify_inbound_ms'))} ms", "unsigned",
            _fmt(round(signing["build_signed_ms"] / signing["build_unsigned_ms"], 1)), "-")
        if signing.get("ceiling_private_key_ops_per_second") and a:
            row(f"ceiling on fan-out from signing alone ({signing['cores']} cores doing nothing else)", "-", "-",
                f"{signing['key']}: {_fmt(signing['private_key_op_ms'])} ms per private-key operation, "
                f"{signing['private_key_ops_per_notify']} per Notify: "
                f"{_fmt(signing['ceiling_private_key_ops_per_second'])}/s; "
                f"whole signed build: {_fmt(signing['ceiling_signed_build_per_second'])}/s", "(a)",
                f"{_fmt(round(signing['ceiling_private_key_ops_per_second'] / a, 3))} / "
                f"{_fmt(round(signing['ceiling_signed_build_per_second'] / a, 3))}", "-")
    elif signing:
        row("signing", "-", "-", "not measured: " + signing.get("reason", ""), "", "", "")
    reads = results.get("operator_reads") or {}
    for n, size in reads.get("sizes", {}).items():
        for key, label in OPERATOR_READS:
            entry = size[key]
            row(f"{label}, p50 (min-max of {entry['repeats']})", "postgresql", f"{_fmt(int(n))} deliveries",
                f"{_fmt(entry['p50_ms'])} ms ({_fmt(entry['min_ms'])}-{_fmt(entry['max_ms'])})", "", "", "-")
    for key, label in OPERATOR_READS if reads.get("ratio") else ():
        row(f"{label}: largest / smallest", "postgresql", "", "", "", _fmt(reads["ratio"][key]), "")
    for cells in fanout_concurrency_rows(results.get("fanout_concurrency") or {}):
        row(*cells)
    lines += ["", "| target | value | wanted | met |", "|---|---|---|---|"]
    for target in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "-"}[target["met"]]
        lines.append(f"| {target['name']} | {_fmt(target['value'])} | {target['target']} | {met} |")
    if results.get("errors"):
        lines += ["", "Errors: " + ", ".join(results["errors"])]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Fan-out time and peak RSS against N, per mode."""
    series = {mode: by_n for mode, by_n in results.get("fanout", {}).items()
              if isinstance(by_n, dict) and "skipped" not in by_n and by_n}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    a = results.get("baselines", {}).get("a_aiohttp", {}).get("per_second")
    s_floor = (results.get("baselines", {}).get("s_rsa2048") or {}).get("per_second")
    for index, (mode, by_n) in enumerate(series.items()):
        color = f"C{index}"
        ns = sorted(int(n) for n in by_n)
        # a run that hit its time limit is drawn at the time its measured rate projects, hollow
        seconds = [by_n[str(n)]["seconds"] if by_n[str(n)].get("done") else
                   n / max(by_n[str(n)].get("deliveries_per_second") or 1e-9, 1e-9) for n in ns]
        left.plot(ns, seconds, color=color, label=f"hiem {mode}")
        for n, value in zip(ns, seconds, strict=True):
            done = by_n[str(n)].get("done")
            left.plot([n], [value], marker="o", color=color, markerfacecolor=color if done else "white")
        for role_index, role in enumerate(sorted({r for n in ns for r in by_n[str(n)].get("peak_rss_mb", {})})):
            right.plot(ns, [by_n[str(n)]["peak_rss_mb"].get(role) for n in ns], marker="os^v"[role_index % 4],
                       color=color, label=f"{mode}: {role}")
    ns = sorted({int(n) for by_n in series.values() for n in by_n})
    if a:
        left.plot(ns, [n / a for n in ns], linestyle="--", color="grey", label="(a) aiohttp loop, same consumer")
    if s_floor:
        left.plot(ns, [n / s_floor for n in ns], linestyle="-.", color="black", label="(s) signing floor, RSA-2048")
        for index, mode in enumerate(series):
            if mode in FANOUT_VS_S:
                left.plot(ns, [n / (FANOUT_VS_S[mode] * s_floor) for n in ns], linestyle=":", color=f"C{index}",
                          label=f"target {mode}: {FANOUT_VS_S[mode]} x (s)")
    left.set(xscale="log", yscale="log", xlabel="subscribers N", ylabel="seconds, answer -> last delivery",
             title="Fan-out time (hollow: timed out, projected from its rate)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.axhline(RSS_LIMIT_MB, color="red", linestyle=":", label=f"{RSS_LIMIT_MB:.0f} MB limit")
    right.set(xscale="log", xlabel="subscribers N", ylabel="peak RSS, MB (largest process of the role)",
              title="Memory during the fan-out")
    right.set_ylim(bottom=0)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(f"hiem fan-out, {results.get('meta', {}).get('date', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

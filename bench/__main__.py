"""``python -m bench``: run hiem's benchmarks, write ``bench/results/<date>.json`` and a markdown table.

    python -m bench              # default set: baselines, (s), Subscribe, fan-out 1k/10k (and with an EC key),
                                 # latency, matching 1k/1M, options, fan-outs side by side (about 15 min)
    python -m bench --large      # adds the 100,000-subscriber fan-outs
    python -m bench --smoke      # N=200, everything minimal (CI: tests/integration/test_bench_smoke.py)
    python -m bench --profile    # adds py-spy profiles of the delivering process during a 10k fan-out
    python -m bench --only baselines,matching --modes distributed
    python -m bench --only baselines,subscribe   # Subscribe against (b) alone, both modes
    python -m bench --only baselines,durability  # embedded SQLite synchronous=FULL against NORMAL
    python -m bench --only baselines,signing-floor  # (s), the signing floor (RSA-2048, EC P-256) against (a), (a')
    python -m bench --only operator-reads --out bench/results/operator-reads
                                 # /metrics, /ops, hiem status at 10k and 5M delivery rows (PostgreSQL)
    python -m bench --only fanout-concurrency --out bench/results/fanout-concurrency
                                 # a small Notify during a 100k fan-out's creation, XPath filters, 1 vs 2
                                 # worker processes (distributed; in --smoke at small sizes)

What each figure means and how it is measured: docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fanout_concurrency, harness, matching, micro, operator_reads, report, suite

SECTIONS = ("baselines", "signing", "modes", "subscribe", "durability", "default_limit", "matching", "options",
            "profile", "operator-reads", "signing-floor", "fanout-concurrency")
#: sections a plain run leaves out: "profile" is slow, "subscribe" repeats what "modes" measures,
#: "operator-reads" generates 5M rows (minutes); "fanout-concurrency" (a 100k fan-out, about 6 min) is in
#: every run, because three of the fan-out targets are its
_ON_REQUEST = {"profile", "subscribe", "operator-reads"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="N=200, minimal durations (CI)")
    size.add_argument("--large", action="store_true", help="add the 100,000-subscriber fan-outs")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of a worker during a fan-out")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="where the JSON, markdown and plot go (default bench/results)")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--modes", default="", help="embedded,distributed (default both)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for the 1-minute load average to drop below 1.0 "
                             "(a shared machine: other jobs' CPU use changes every figure)")
    parser.add_argument("--soak", type=float, metavar="MINUTES",
                        help="only the soak: a steady mix for MINUTES against one broker (bench/soak.py)")
    args = parser.parse_args(argv)
    if args.soak:
        from bench import soak

        return soak.main(args, default_out=args.out == parser.get_default("out"))

    plan = suite.PLANS["smoke" if args.smoke else "large" if args.large else "default"]
    if args.modes:
        plan.modes = tuple(m for m in args.modes.split(",") if m)
        plan.option_modes = tuple(m for m in plan.option_modes if m in plan.modes) or plan.modes[:1]
    if args.profile:
        plan.profile_seconds = 8.0 if not args.smoke else 2.0
        plan.profile_n = 10_000 if not args.smoke else 200
    wanted = set(args.only.split(",")) - {""} if args.only else set(SECTIONS) - (_ON_REQUEST - (
        {"profile"} if args.profile else set()))
    unknown = wanted - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    suffix = "" if plan.name == "default" else f"-{plan.name}"
    if args.only:
        suffix += "-" + "-".join(sorted(wanted))
    json_path = args.out / f"{stamp}{suffix}.json"
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    if args.wait_quiet:
        deadline = time.monotonic() + args.wait_quiet
        while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
            log(f"waiting for a quiet machine (load average {os.getloadavg()[0]:.2f})")
            time.sleep(15)
        started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="hiem-bench-") as tmp:
        ctx = suite.Context(plan=plan, tmp=Path(tmp), out=args.out, log=log)
        results = ctx.results
        results["meta"] = meta(plan, args)
        missing = {"postgresql": harness.postgres_available(), "redis": harness.redis_available()}
        results["meta"]["services"] = {k: v or "ok" for k, v in missing.items()}
        distributed_ok = not missing["postgresql"] and not missing["redis"]
        for key in ("baselines", "signing", "subscribe", "durability", "fanout", "fanout_ec", "publisher_latency",
                    "memory", "matching", "options", "fanout_default_limit", "profile", "operator_reads",
                    "fanout_concurrency", "errors"):
            results.setdefault(key, {})

        def section(name: str, key: str, fn, *fn_args):  # type: ignore[no-untyped-def]
            log(f"{name} ...")
            try:
                return fn(ctx, *fn_args)
            except Exception as exc:  # one broken benchmark must not lose the others' figures
                log(f"{name} FAILED: {exc!r}")
                results["errors"][key] = "".join(traceback.format_exception(exc))[-4000:]
                return None

        if "baselines" in wanted:
            results["baselines"] = section("baselines", "baselines", suite.baselines) or {}
        if "signing-floor" in wanted:  # before the fan-outs, which report their ratio to (s)
            results["baselines"].update(section("baselines: (s) signing floor", "signing_floor",
                                                suite.signing_floor) or {})
        if "signing" in wanted:
            results["signing"] = section("signing (in-process, CPU time)", "signing",
                                         lambda c: micro.signing(c.tmp)) or {}
        for mode in plan.modes:
            if mode == "distributed" and not distributed_ok:
                reason = "; ".join(v for v in missing.values() if v)
                for key in ("subscribe", "fanout", "publisher_latency"):
                    results[key][mode] = {"skipped": reason}
                log(f"{mode}: skipped ({reason})")
                continue
            if "modes" in wanted:
                found = section(f"{mode}: Subscribe, fan-out, latency", f"modes.{mode}", suite.mode_suite, mode)
                if found:
                    results["subscribe"][mode] = found["subscribe"]
                    results["fanout"][mode] = found["fanout"]
                    results["publisher_latency"][mode] = found["latency"]
                    results["memory"][mode] = report.memory_summary(found["fanout"])
                results["fanout_ec"][mode] = section(f"{mode}: fan-out with an EC P-256 broker key",
                                                     f"fanout_ec.{mode}", suite.ec_fanout, mode)
            if "subscribe" in wanted:
                results["subscribe"][mode] = section(f"{mode}: Subscribe", f"subscribe.{mode}",
                                                     suite.subscribe_only, mode)
            if "default_limit" in wanted:
                results["fanout_default_limit"][mode] = section(
                    f"{mode}: fan-out with the default per-consumer limit", f"default_limit.{mode}",
                    suite.default_limit, mode)
            if "options" in wanted and mode in plan.option_modes:
                results["options"][mode] = section(f"{mode}: ordered delivery, audit shipping",
                                                   f"options.{mode}", suite.options, mode)
            if "profile" in wanted:
                results["profile"][mode] = section(f"{mode}: profile", f"profile.{mode}", suite.profile, mode)
        if "durability" in wanted:
            results["durability"] = section("embedded: durable commits (synchronous FULL vs NORMAL)",
                                            "durability", suite.durability) or {}
        if "matching" in wanted:
            if not missing["postgresql"]:
                results["matching"]["postgresql"] = section("matching (PostgreSQL)", "matching.postgresql",
                                                            _matching_pg)
            else:
                results["matching"]["postgresql"] = {"skipped": missing["postgresql"]}
            results["matching"]["sqlite"] = section("matching (SQLite)", "matching.sqlite", _matching_sqlite)
        if "operator-reads" in wanted:
            results["operator_reads"] = {"skipped": missing["postgresql"]} if missing["postgresql"] else section(
                "operator reads against history size (PostgreSQL)", "operator_reads",
                lambda c: operator_reads.run(harness.fresh_postgres, log=c.log)) or {}
        if "fanout-concurrency" in wanted:
            results["fanout_concurrency"] = {"skipped": "; ".join(v for v in missing.values() if v)} \
                if not distributed_ok else section("fan-outs side by side (distributed)", "fanout_concurrency",
                                                   fanout_concurrency.run) or {}
        if not results["errors"]:
            del results["errors"]
        results["targets"] = report.targets(results, plan)
        results["meta"]["duration_s"] = round(time.monotonic() - started, 1)

    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = report.markdown(results)
    json_path.with_suffix(".md").write_text(table)
    plot = report.plot(results, json_path.with_name(json_path.stem + "-fanout.png"))
    print()
    print(table)
    log(f"wrote {json_path}, {json_path.with_suffix('.md')}" + (f", {plot}" if plot else ""))
    return 1 if results.get("errors") else 0


def _matching_pg(ctx: suite.Context) -> dict[str, Any]:
    with harness.fresh_postgres() as url:
        return matching.run(url, ctx.plan.matching_sizes, ctx.plan.matching_repeats, ctx.log)


def _matching_sqlite(ctx: suite.Context) -> dict[str, Any]:
    path = ctx.tmp / "matching.db"
    return matching.run(f"sqlite:///{path}", ctx.plan.matching_sizes, ctx.plan.matching_repeats, ctx.log)


def meta(plan: suite.Plan, args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md

    import psutil

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": plan.name, "argv": sys.argv[1:] if args else [],
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "os": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "versions": {name: version(name) for name in ("hiem", "SQLAlchemy", "psycopg", "urllib3", "celery", "kombu",
                                                      "cheroot", "aiohttp", "lxml")},
        "servers": report.server_versions(),
        "code_sha256": code_hash(),
        "settings": {"delivery_concurrency_baseline": suite.DELIVERY_CONCURRENCY,
                     "subscribe_clients": suite.SUBSCRIBE_CLIENTS, "server_threads": suite.SERVER_THREADS,
                     "fanout_env": suite.FANOUT_ENV, "distributed_workers": 2,
                     "worker_concurrency": "hiem worker default (Celery prefork, one child per CPU)",
                     "plan": {k: v for k, v in vars(plan).items()}},
    }


def code_hash() -> str:
    """A digest of hiem/ and workers/ sources: which code these figures belong to."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted([*root.glob("hiem/**/*.py"), *root.glob("workers/**/*.py")]):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    sys.exit(main())

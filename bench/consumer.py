"""A fast Notify consumer: an aiohttp server (its own process) answering every POST with 202.

It is the far end of the fan-out benchmarks and of the delivery baselines (a) and (a'): fast enough that
the consumer is not what limits the broker. ``GET /stats`` returns how many POSTs it answered.

With ``--record`` it also notes, for every POST whose body carries a marker ``bench-mark-<n>``, when it
arrived (epoch seconds, after the body was read), its path and ``n``; ``GET /arrivals`` returns them. Only
the latency benchmarks ask for it (bench/fanout_concurrency.py): a regular expression over every 12 KB
body would cost the throughput benchmarks' consumer CPU.

    python -m bench.consumer --port 9000 [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time

from aiohttp import web

MARK = re.compile(rb"bench-mark-(\d+)")


def make_app(record: bool = False) -> web.Application:
    count = 0
    arrivals: list[tuple[float, str, int]] = []

    async def notify(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.read()
        count += 1
        if record and (found := MARK.search(body)):
            arrivals.append((time.time(), request.path, int(found.group(1))))
        return web.Response(status=202)

    async def stats(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"received": count}), content_type="application/json")

    async def arrived(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(arrivals), content_type="application/json")

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_get("/arrivals", arrived)
    app.router.add_post("/{tail:.*}", notify)
    return app


async def serve(host: str, ports: list[int], record: bool = False) -> None:
    runner = web.AppRunner(make_app(record), access_log=None, handle_signals=False)
    await runner.setup()
    for port in ports:
        await web.TCPSite(runner, host, port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"consumer listening on {host}:{','.join(map(str, ports))}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--record", action="store_true", help="note when marked Notifies arrive (GET /arrivals)")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.record))


if __name__ == "__main__":
    main()

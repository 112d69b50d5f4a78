"""A fast Notify consumer: an aiohttp server (its own process) answering every POST with 202.

It is the far end of the fan-out benchmarks and of the delivery baselines (a) and (a'): fast enough that
the consumer is not what limits the broker. ``GET /stats`` returns how many POSTs it answered.

    python -m bench.consumer --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web


def make_app() -> web.Application:
    count = 0

    async def notify(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        return web.Response(status=202)

    async def stats(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"received": count}), content_type="application/json")

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", notify)
    return app


async def serve(host: str, ports: list[int]) -> None:
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
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
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

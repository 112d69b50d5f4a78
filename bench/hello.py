"""Baseline (b): a bare "hello" WSGI endpoint on hiem's own server stack.

The same ``cheroot.wsgi.Server`` with the same thread count and settings that ``hiem serve`` builds
(hiem.app.server.make_http_server: numthreads, timeout=30, unlimited body), in its own process, so the
Subscribe benchmark can be read as a fraction of what the HTTP layer alone allows.

    python -m bench.hello --port 8081 --threads 16
"""

from __future__ import annotations

import argparse
import os
import signal

from cheroot import wsgi


def hello(environ, start_response):  # type: ignore[no-untyped-def]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)  # read the request like the SOAP edge does
    body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    server = wsgi.Server((args.host, args.port), hello, numthreads=args.threads, server_name="hiem", timeout=30)
    server.max_request_body_size = 0

    def _stop(*_: object) -> None:
        os._exit(0)  # nothing to clean up; cheroot's orderly stop waits for idle keep-alive connections

    signal.signal(signal.SIGTERM, _stop)
    print(f"hello listening on {args.host}:{args.port}", flush=True)
    server.safe_start()


if __name__ == "__main__":
    main()

"""Load generators: the aiohttp POST loop (baseline a), wrk (baseline a'), SOAP Subscribe and Notify clients."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from hiem import ns
from tests.support import wsn

ILI = wsn.ILI


@dataclass(frozen=True)
class Notify:
    """The exact bytes and headers hiem POSTs to a consumer for one delivery."""

    body: bytes
    headers: dict[str, str]
    signed: bool = False


def delivered_notify(consumer_url: str, tmp: Path | None = None) -> Notify:
    """Built by hiem's own code (hiem.wsn.outgoing.build_delivery), so baselines send what hiem sends:
    signed with a dev identity as the broker signs every Notify (hiem.security.setup.BrokerSigner), when
    this hiem has signing and ``tmp`` is given for the identity; unsigned otherwise."""
    from hiem.wsn.outgoing import build_delivery

    claim = make_claim(consumer_url)
    signer = None
    if tmp is not None:
        try:
            from hiem.config import load_settings
            from hiem.security.setup import BrokerSigner, broker_identity

            settings = load_settings({"HIEM_DEV": "1", "HIEM_DEV_DIR": str(tmp / "dev-identity")})
            signer = BrokerSigner(settings, broker_identity(settings))
        except ImportError:
            signer = None
    request = build_delivery(claim, signer) if signer else build_delivery(claim)
    return Notify(request.body, {**request.headers, "User-Agent": "hiem-broker"}, signed=signer is not None)


def make_claim(consumer_url: str):  # type: ignore[no-untyped-def]
    """A delivery claim as the worker reads it, for a subscription to the ILI topic."""
    import dataclasses

    from hiem.store.deliveries import Claim

    known = dict(
        delivery_id=1, attempt=1, notification_id=1, subscription_id=str(uuid.uuid4()),
        consumer_address=consumer_url, consumer_reference_parameters=b"",
        manager_address="http://127.0.0.1:8080/wsn/SubscriptionManager",
        dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete", soap_version="1.2",
        topic_namespace=ns.NHIN, topic_path="GIPSE/Biosurveillance/InfluenzaLikeIllness",
        message_xml=PAYLOAD.encode(), producer_reference=b"", created_at=datetime.now(UTC), sequence=1,
    )
    # Claim grows fields as hiem grows; anything not known here gets None (hiem's "not set")
    return Claim(**{f.name: known.get(f.name) for f in dataclasses.fields(Claim)})


#: the published message: a small GIPSE-like count report (the HIEM sample's shape)
PAYLOAD = ("<gipse:Report xmlns:gipse='urn:bench:gipse'><gipse:Region>ZIP3-021</gipse:Region>"
           "<gipse:Syndrome>InfluenzaLikeIllness</gipse:Syndrome><gipse:Count>42</gipse:Count>"
           "<gipse:Start>2026-11-01</gipse:Start><gipse:End>2026-11-07</gipse:End></gipse:Report>")


def notify_envelope(broker_url: str, topic: str = ILI) -> bytes:
    path = "/wsn/NotificationBroker"
    return wsn.envelope(wsn.notify_body(topic, PAYLOAD), action=wsn.ACTIONS["Notify"], to=broker_url + path)


def subscribe_envelope(broker_url: str, consumer_url: str, topic: str = ILI, dialect: str = wsn.CONCRETE) -> bytes:
    path = "/wsn/NotificationProducer"
    return wsn.envelope(wsn.subscribe_body(consumer_url, topic, dialect), action=wsn.ACTIONS["Subscribe"],
                        to=broker_url + path)


def soap12_headers(operation: str) -> dict[str, str]:
    return {"Content-Type": f'application/soap+xml; charset=utf-8; action="{wsn.ACTIONS[operation]}"'}


# -- closed-loop POST clients ----------------------------------------------------------------------------------
async def _post_loop(url: str, bodies, headers: dict[str, str], concurrency: int, duration: float | None,
                     count: int | None, expect: set[int]) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    done = errors = 0
    sent = 0
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        stop_at = started + duration if duration else None

        async def client() -> None:
            nonlocal done, errors, sent
            while True:
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                if count is not None:
                    if sent >= count:
                        return
                    sent += 1
                t0 = time.perf_counter()
                async with session.post(url, data=bodies()) as response:
                    await response.read()
                    if response.status in expect:
                        done += 1
                    else:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": done, "errors": errors, "seconds": round(elapsed, 3), "per_second": round(done / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None}


def aiohttp_post(url: str, body: bytes, headers: dict[str, str], concurrency: int, duration: float,
                 expect: frozenset[int] = frozenset({200, 202})) -> dict[str, float]:
    """Baseline (a): keep-alive aiohttp ClientSession, ``concurrency`` requests in flight, for ``duration`` s."""
    return asyncio.run(_post_loop(url, lambda: body, headers, concurrency, duration, None, set(expect)))


def subscribe_load(broker_url: str, consumer_url: str, *, concurrency: int, duration: float | None = None,
                   count: int | None = None, topic: str = ILI) -> dict[str, float]:
    """``concurrency`` clients sending Subscribe requests (each its own wsa:MessageID) over keep-alive."""
    url = broker_url + "/wsn/NotificationProducer"
    template = subscribe_envelope(broker_url, consumer_url, topic)
    marker = re.search(rb"urn:uuid:[0-9a-f-]{36}", template).group(0)  # type: ignore[union-attr]

    def body() -> bytes:
        return template.replace(marker, f"urn:uuid:{uuid.uuid4()}".encode())

    return asyncio.run(_post_loop(url, body, soap12_headers("Subscribe"), concurrency, duration, count, {200}))


# -- wrk -------------------------------------------------------------------------------------------------------
def wrk_available() -> str | None:
    return shutil.which("wrk")


def wrk_post(url: str, body: bytes, headers: dict[str, str], *, connections: int, threads: int, duration: float,
             tmp: Path) -> dict[str, float]:
    """Baseline (a'): wrk POSTing ``body`` (a Lua script sets method, headers and body)."""
    body_file = tmp / f"wrk-body-{uuid.uuid4().hex[:6]}.xml"
    body_file.write_bytes(body)
    script = tmp / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    lines = ['wrk.method = "POST"', f'local f = io.open("{body_file}", "rb")', "wrk.body = f:read('*a')", "f:close()"]
    lines += [f'wrk.headers["{k}"] = {_lua_string(v)}' for k, v in headers.items()]
    lines += ["function done(summary, latency, requests)",
              '  io.write(string.format("BENCH %d %d %d %d %d %d\\n", summary.requests, summary.duration,',
              "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write"
              " + summary.errors.timeout,",
              "    latency:percentile(50), latency:percentile(99), summary.bytes))",
              "end"]
    script.write_text("\n".join(lines) + "\n")
    seconds = f"{max(1, round(duration))}s"
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", seconds, "-s", str(script), url]
    # one more try: on a machine busy with a parallel test run, wrk has exited 1 once without a summary
    for attempt in (1, 2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30)
        match = re.search(r"BENCH (\d+) (\d+) (\d+) (\d+) (\d+)", result.stdout)
        if result.returncode == 0 and match:
            break
        if attempt == 2:
            raise RuntimeError(f"wrk exited {result.returncode} twice; last output:\n{result.stdout}\n{result.stderr}")
    requests, micros, errors, p50, p99 = (int(g) for g in match.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return {"requests": requests, "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
            "seconds": round(micros / 1e6, 3), "per_second": round(requests / (micros / 1e6), 1),
            "p50_ms": round(p50 / 1000, 2), "p99_ms": round(p99 / 1000, 2)}


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

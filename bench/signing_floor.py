"""Baseline (s): the least work any compliant broker must do per delivery, built from the libraries alone.

For each delivery one process (one per core) fills a parsed Notify template with its own wsa:MessageID,
wsa:To, reference parameter, ``hiem:Sequence`` and wsu:Timestamp, takes lxml's exclusive C14N of every
referenced part (the Body, the Timestamp, every header block but wsse:Security: the references hiem's
``EnvelopeSigner`` makes), SHA-256 digests them with hashlib, signs the exclusive C14N of SignedInfo with
one ``cryptography`` private-key operation (RSA-2048 PKCS#1 v1.5 or ECDSA P-256, SHA-256), serialises,
and POSTs the bytes with aiohttp to the bench consumer. The broker's SAML assertion is minted once and
reused (hiem mints one per validity window, so its share per delivery tends to nothing).

Why not hiem's classes: the floor must not carry hiem's costs. hiem is used only *before* measuring, in
the parent, to obtain the same key, certificate and assertion and a sample of what hiem signs
(:func:`hiem_material`). The measuring processes (``python -m bench.signing_floor worker``) import
nothing from hiem, and report so.

A floor that signs wrongly would be a cheap imitation, so one message each worker produced is verified
with libxmlsec1 (python-xmlsec), an implementation independent of the lxml/hashlib/cryptography path
(:func:`verify`); tests/integration/test_signing_floor.py also has hiem's own verifier accept it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
NHIN = "http://www.hhs.gov/healthit/nhin"
HIEM = "urn:hiem:broker:1"
WSU_ID = f"{{{WSU}}}Id"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
X509_TOKEN = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
NOTIFY_ACTION = "http://docs.oasis-open.org/wsn/bw-2/NotificationConsumer/Notify"
HEADERS = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{NOTIFY_ACTION}"',
           "User-Agent": "hiem-bench-floor"}
#: the referenced parts, by wsu:Id, in hiem's order (Body, Timestamp, then the header blocks)
REFERENCED = ("body", "ts", "to", "action", "mid", "rp", "seq")
#: the published message: the bench's GIPSE-like report (bench/load.py PAYLOAD), inside wsnt:Message
PAYLOAD = ("<gipse:Report xmlns:gipse='urn:bench:gipse'><gipse:Region>ZIP3-021</gipse:Region>"
           "<gipse:Syndrome>InfluenzaLikeIllness</gipse:Syndrome><gipse:Count>42</gipse:Count>"
           "<gipse:Start>2026-11-01</gipse:Start><gipse:End>2026-11-07</gipse:End></gipse:Report>")
#: subscribers a worker cycles through: each delivery names one (reference parameter, Body, Sequence)
SUBSCRIBERS = 1_000
#: the assertion's validity (hiem: BROKER_ASSERTION_LIFETIME); a run must stay well inside it
ASSERTION_LIFETIME_S = 300.0
#: Timestamp Created -> Expires (hiem's EnvelopeSigner default)
TIMESTAMP_LIFETIME_S = 300.0


@dataclass(frozen=True)
class Material:
    """What a measuring process needs, obtained once: the broker's key, certificate and assertion."""

    key_pem: bytes
    cert_pem: bytes
    assertion: bytes  # a serialized, signed saml2:Assertion, reused for every delivery
    key_kind: str  # "RSA-2048" or "EC P-256"


def _template(material: Material, private_key: Any) -> str:
    method = ECDSA_SHA256 if isinstance(private_key, ec.EllipticCurvePrivateKey) else RSA_SHA256
    references = "".join(
        f'<ds:Reference URI="#{ref}"><ds:Transforms><ds:Transform Algorithm="{EXC_C14N}"/></ds:Transforms>'
        f'<ds:DigestMethod Algorithm="{SHA256}"/><ds:DigestValue/></ds:Reference>' for ref in REFERENCED)
    return (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA}" xmlns:wsu="{WSU}"><s:Header>'
        f'<wsse:Security xmlns:wsse="{WSSE}" s:mustUnderstand="true">'
        f'<wsu:Timestamp wsu:Id="ts"><wsu:Created/><wsu:Expires/></wsu:Timestamp>'
        f'<wsse:BinarySecurityToken EncodingType="{BASE64_BINARY}" ValueType="{X509_TOKEN}" wsu:Id="x509">'
        f'{_cert_base64(material.cert_pem)}</wsse:BinarySecurityToken>'
        f'<ds:Signature xmlns:ds="{DS}"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
        f'<ds:SignatureMethod Algorithm="{method}"/>{references}</ds:SignedInfo><ds:SignatureValue/>'
        f'<ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI="#x509" ValueType="{X509_TOKEN}"/>'
        f'</wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature></wsse:Security>'
        f'<wsa:To wsu:Id="to"/><wsa:Action wsu:Id="action">{NOTIFY_ACTION}</wsa:Action>'
        f'<wsa:MessageID wsu:Id="mid"/>'
        f'<nhin:SubscriptionId xmlns:nhin="{NHIN}" wsa:IsReferenceParameter="true" wsu:Id="rp"/>'
        f'<hiem:Sequence xmlns:hiem="{HIEM}" wsu:Id="seq"/></s:Header>'
        f'<s:Body wsu:Id="body"><wsnt:Notify xmlns:wsnt="{WSNT}"><wsnt:NotificationMessage>'
        f'<wsnt:SubscriptionReference><wsa:Address>http://127.0.0.1:8080/wsn/SubscriptionManager</wsa:Address>'
        f'<wsa:ReferenceParameters><nhin:SubscriptionId xmlns:nhin="{NHIN}"/></wsa:ReferenceParameters>'
        f'</wsnt:SubscriptionReference><wsnt:Topic xmlns:tns="{NHIN}" '
        f'Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete">'
        f'tns:GIPSE/Biosurveillance/InfluenzaLikeIllness</wsnt:Topic>'
        f'<wsnt:Message>{PAYLOAD}</wsnt:Message></wsnt:NotificationMessage></wsnt:Notify></s:Body></s:Envelope>'
    )


def _cert_base64(cert_pem: bytes) -> str:
    lines = cert_pem.decode("ascii").strip().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))


def _c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


class FloorMessage:
    """One process's Notify template, filled and signed in place for each delivery (single-threaded).

    In place because the floor is the least work: the fixed parts (certificate, assertion, the ds:Signature
    skeleton) are parsed once; the ids are fixed too (they need only be unique within one message).
    """

    def __init__(self, material: Material, consumer_url: str) -> None:
        key = serialization.load_pem_private_key(material.key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"unsupported key type {type(key).__name__}")
        self._key = key
        self.consumer_url = consumer_url
        self.root = etree.fromstring(_template(material, key).encode())
        security = self.root[0][0]
        signature = security[-1]
        signature.addprevious(etree.fromstring(material.assertion))
        by_id = {el.get(WSU_ID): el for el in self.root.iter() if el.get(WSU_ID)}
        self._parts = [by_id[ref] for ref in REFERENCED]
        self._signed_info, self._signature_value = signature[0], signature[1]
        self._digests = [ref.find(f"{{{DS}}}DigestValue") for ref in self._signed_info.iter(f"{{{DS}}}Reference")]
        created, expires = by_id["ts"]
        self._created, self._expires = created, expires
        self._to, self._message_id, self._refparam, self._sequence = (by_id[k] for k in ("to", "mid", "rp", "seq"))
        self._body_subscription = by_id["body"].find(f".//{{{WSA}}}ReferenceParameters/{{{NHIN}}}SubscriptionId")

    def build(self, subscription_id: str, sequence: int) -> bytes:
        """The signed Notify for one delivery, serialised."""
        now = time.time()
        self._created.text = _instant(now)
        self._expires.text = _instant(now + TIMESTAMP_LIFETIME_S)
        self._to.text = self.consumer_url
        self._message_id.text = f"urn:uuid:{uuid.uuid4()}"
        self._refparam.text = subscription_id
        self._sequence.set("subscription", subscription_id)
        self._sequence.text = str(sequence)
        self._body_subscription.text = subscription_id
        for part, digest in zip(self._parts, self._digests, strict=True):
            digest.text = base64.b64encode(hashlib.sha256(_c14n(part)).digest()).decode("ascii")
        self._signature_value.text = base64.b64encode(self.sign(_c14n(self._signed_info))).decode("ascii")
        return etree.tostring(self.root)

    def sign(self, data: bytes) -> bytes:
        """The one private-key operation of a delivery."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            # XML-DSig wants ECDSA as r || s, fixed width, not cryptography's DER
            r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
            width = (self._key.curve.key_size + 7) // 8
            return r.to_bytes(width, "big") + s.to_bytes(width, "big")
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _instant(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


# -- the independent check ---------------------------------------------------------------------------------
def referenced_tags(body: bytes) -> list[str]:
    """The Clark names of what the envelope signature (the one directly in wsse:Security) references."""
    root = etree.fromstring(body)
    by_id = {el.get(WSU_ID): el for el in root.iter() if el.get(WSU_ID)}
    signature = root.find(f"{{{SOAP12}}}Header/{{{WSSE}}}Security/{{{DS}}}Signature")
    if signature is None:
        raise ValueError("no ds:Signature in wsse:Security")
    return [by_id[ref.get("URI", "")[1:]].tag for ref in signature.iter(f"{{{DS}}}Reference")]


def verify(body: bytes, cert_pem: bytes) -> list[str]:
    """Verify the envelope signature with libxmlsec1 against ``cert_pem`` and check it covers the Body, the
    Timestamp and every header block but wsse:Security; returns the referenced tags. Raises otherwise."""
    import xmlsec  # the checker only: never on the per-delivery path

    root = etree.fromstring(body)
    context = xmlsec.SignatureContext()
    for element in root.iter():
        if element.get(WSU_ID):
            context.register_id(element, "Id", WSU)
    header, envelope_body = root[0], root[1]
    security = header.find(f"{{{WSSE}}}Security")
    signature = security.find(f"{{{DS}}}Signature") if security is not None else None
    if signature is None:
        raise ValueError("no ds:Signature in wsse:Security")
    context.key = xmlsec.Key.from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    context.verify(signature)  # signature value and every reference's digest, or xmlsec.Error
    covered = {ref.get("URI", "")[1:] for ref in signature.iter(f"{{{DS}}}Reference")}
    must = [envelope_body, security.find(f"{{{WSU}}}Timestamp"),
            *(block for block in header if block is not security)]
    missing = [el.tag for el in must if el is None or el.get(WSU_ID) not in covered]
    if missing:
        raise ValueError(f"the signature does not cover {missing}")
    return referenced_tags(body)


# -- a measuring process -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerConfig:
    material_dir: str
    consumer_url: str
    seconds: float
    concurrency: int


def save_material(material: Material, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "key.pem"
    key_path.write_bytes(material.key_pem)
    key_path.chmod(0o600)
    (directory / "cert.pem").write_bytes(material.cert_pem)
    (directory / "assertion.xml").write_bytes(material.assertion)
    (directory / "kind.txt").write_text(material.key_kind)


def load_material(directory: Path) -> Material:
    return Material((directory / "key.pem").read_bytes(), (directory / "cert.pem").read_bytes(),
                    (directory / "assertion.xml").read_bytes(), (directory / "kind.txt").read_text())


def _cpu_median_ms(fn: Any, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.thread_time()
        fn()
        timings.append(time.thread_time() - started)
    return round(1000 * statistics.median(timings), 3)


async def _deliver(config: WorkerConfig, message: FloorMessage) -> dict[str, Any]:
    import aiohttp  # here, not at import: the checker and the tests need no HTTP client

    subscribers = [str(uuid.uuid4()) for _ in range(SUBSCRIBERS)]
    connector = aiohttp.TCPConnector(limit=config.concurrency, force_close=False)
    counter = 0

    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def one() -> tuple[bool, float]:
            nonlocal counter
            counter += 1
            started = time.perf_counter()
            body = message.build(subscribers[counter % SUBSCRIBERS], counter // SUBSCRIBERS + 1)
            async with session.post(config.consumer_url, data=body) as response:
                await response.read()
                return response.status == 202, time.perf_counter() - started

        for _ in range(2 * config.concurrency):  # warm up: open the connections before "ready"
            await one()
        first = message.build(subscribers[0], 1)
        calibration = {"build_sign_cpu_ms": _cpu_median_ms(lambda: message.build(subscribers[0], 1), 40),
                       "private_key_cpu_ms": _cpu_median_ms(lambda: message.sign(b"x" * 2048), 40),
                       "body_bytes": len(first), "hiem_loaded": any(m.split(".")[0] == "hiem" for m in sys.modules)}
        print("ready " + json.dumps({**calibration, "sample": base64.b64encode(first).decode()}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"

        done = errors = 0
        latencies: list[float] = []
        cpu0, started = time.process_time(), time.perf_counter()
        stop_at = started + config.seconds

        async def client() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                try:
                    ok, latency = await one()
                except aiohttp.ClientError:
                    ok, latency = False, 0.0
                done, errors = done + ok, errors + (not ok)
                latencies.append(latency)

        await asyncio.gather(*(client() for _ in range(config.concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {"deliveries": done, "errors": errors, "seconds": round(elapsed, 3), "cpu_s": round(cpu, 3),
            "latencies_ms": [round(1000 * x, 3) for x in latencies], **calibration}


def worker_main(config_path: str) -> None:
    config = WorkerConfig(**json.loads(Path(config_path).read_text()))
    message = FloorMessage(load_material(Path(config.material_dir)), config.consumer_url)
    result = asyncio.run(_deliver(config, message))
    print("result " + json.dumps(result), flush=True)


# -- the driver (the bench's parent process) ---------------------------------------------------------------
def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def hiem_material(directory: Path, consumer_url: str, elliptic: bool) -> tuple[Material, bytes]:
    """Setup only, in the parent: the key, certificate and minted assertion hiem's broker signs with, and a
    Notify hiem signed with them (the reference layout to compare against). RSA-2048 is the dev identity
    (the same key as baseline (a)'s body when ``directory`` is the baselines'); EC P-256 a fresh pair."""
    from bench import load
    from hiem.config import load_settings
    from hiem.security.setup import BrokerSigner, broker_identity
    from hiem.wsn.outgoing import build_delivery

    env = {"HIEM_DEV": "1", "HIEM_DEV_DIR": str(directory / "dev-identity")}
    if elliptic:
        from bench.suite import ec_identity

        key_path, cert_path = ec_identity(directory / "ec-identity")
        env.update(HIEM_SIGNING_KEY=str(key_path), HIEM_SIGNING_CERT=str(cert_path))
    settings = load_settings(env)
    identity = broker_identity(settings)
    signer = BrokerSigner(settings, identity)
    assertion = etree.tostring(signer.assertion())
    sample = build_delivery(load.make_claim(consumer_url), signer).body
    return Material(identity.key_pem, identity.cert_pem, assertion, "EC P-256" if elliptic else "RSA-2048"), sample


def measure(material: Material, consumer_url: str, *, seconds: float, tmp: Path, processes: int | None = None,
            concurrency: int = 16, roles: dict[str, int] | None = None, reference: bytes | None = None,
            timeout: float = 120.0) -> dict[str, Any]:
    """Run ``processes`` measuring processes (default one per core) for ``seconds`` against the consumer.

    ``reference``: a Notify hiem signed; the floor must reference at least every element hiem's does.
    ``roles``: other processes whose CPU to account (the consumer's pid).
    """
    from bench.meter import CpuMeter

    if seconds >= ASSERTION_LIFETIME_S / 2:
        raise ValueError("the reused assertion would expire during the run")
    processes = processes or cores()
    material_dir = tmp / f"floor-{material.key_kind.replace(' ', '-').lower()}"
    save_material(material, material_dir)
    config = material_dir / "config.json"
    config.write_text(json.dumps(asdict(WorkerConfig(str(material_dir), consumer_url, seconds, concurrency))))
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIEM_")}
    workers = [subprocess.Popen([sys.executable, "-m", "bench.signing_floor", "worker", str(config)], cwd=root,
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    try:
        ready = [_expect(worker, "ready", timeout) for worker in workers]
        checked = [verify(base64.b64decode(r.pop("sample")), material.cert_pem) for r in ready]
        if reference is not None:
            wanted = referenced_tags(reference)
            short = [tag for tag in wanted if tag not in checked[0]]
            if short:
                raise RuntimeError(f"(s) does not reference what hiem references: {short}")
        if any(r["hiem_loaded"] for r in ready):
            raise RuntimeError("a measuring process imported hiem")
        meter = CpuMeter({**(roles or {}), **{f"floor{i}": w.pid for i, w in enumerate(workers)}}).start()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [_expect(worker, "result", seconds + timeout) for worker in workers]
        cpu = meter.stop()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(10)
    return summarize(material, results, ready, checked[0], cpu, processes, concurrency, reference)


def _expect(worker: subprocess.Popen[str], word: str, timeout: float) -> dict[str, Any]:
    assert worker.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = worker.stdout.readline()
        if not line:
            break
        if line.startswith(word + " "):
            return dict(json.loads(line[len(word) + 1:]))
    raise RuntimeError(f"a measuring process gave no {word!r} line (exit code {worker.poll()})")


def summarize(material: Material, results: list[dict[str, Any]], ready: list[dict[str, Any]], covered: list[str],
              cpu: dict[str, Any], processes: int, concurrency: int, reference: bytes | None) -> dict[str, Any]:
    deliveries = sum(r["deliveries"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies_ms"])

    def pct(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    per_second = sum(r["deliveries"] / r["seconds"] for r in results if r["seconds"] > 0)
    senders_ms = 1000 * sum(r["cpu_s"] for r in results) / deliveries if deliveries else None
    consumer_cores = cpu["cores_by_role"].get("consumer")
    consumer_ms = 1000 * consumer_cores * cpu["wall_s"] / deliveries if deliveries and consumer_cores else None
    return {
        "per_second": round(per_second, 1), "deliveries": deliveries, "errors": sum(r["errors"] for r in results),
        "seconds": max(r["seconds"] for r in results), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "key": material.key_kind, "processes": processes, "concurrency_per_process": concurrency,
        "cpu_ms_per_delivery": {"senders": _round(senders_ms), "consumer": _round(consumer_ms),
                                "total": _round((senders_ms or 0) + (consumer_ms or 0)) if senders_ms else None},
        "build_sign_cpu_ms": statistics.median(r["build_sign_cpu_ms"] for r in ready),
        "private_key_cpu_ms": statistics.median(r["private_key_cpu_ms"] for r in ready),
        "body_bytes": ready[0]["body_bytes"],
        "verified": {"by": "libxmlsec1 (python-xmlsec), one message from each process", "references": covered,
                     "hiem_references": referenced_tags(reference) if reference is not None else None},
        "hiem_imported_by_measuring_processes": any(r["hiem_loaded"] for r in ready),
        "cpu": cpu,
    }


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.signing_floor worker CONFIG.json (started by python -m bench)")
    worker_main(sys.argv[2])

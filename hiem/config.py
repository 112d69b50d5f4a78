"""All of hiem's settings, read once from ``HIEM_*`` environment variables into one frozen object.

No other module reads ``os.environ``: build a :class:`Settings` with :func:`load_settings` and pass it
down. Every variable, its default and its meaning:

=============================== ================================ ==========================================
variable                        default                          meaning
=============================== ================================ ==========================================
HIEM_DATABASE_URL               sqlite:///hiem.db                SQLAlchemy URL (``postgresql+psycopg://``)
HIEM_BROKER_URL                 (empty: embedded)                Celery broker; empty = in-process worker
HIEM_DB_POOL                    5                                PostgreSQL connections per process (+ as many
                                                                 overflow); mind max_connections
HIEM_SQLITE_SYNCHRONOUS         FULL                             SQLite only: FULL (or EXTRA) makes each commit,
                                                                 hence each 202, survive a power cut; NORMAL
                                                                 is faster and may lose the last ones
HIEM_QUEUE                      hiem                             Celery queue name (one per deployment)
HIEM_PUBLIC_URL                 (empty: from the request)        base URL written into EPRs we hand out
HIEM_TOPICS_DIR                 ./topics                         TopicNamespace documents loaded at start
HIEM_MAX_REQUEST_BYTES          1048576                          larger SOAP requests refused unparsed
HIEM_MAX_XML_DEPTH              64                               deeper documents refused
HIEM_MAX_XML_ELEMENTS           20000                            documents with more elements refused
HIEM_CONNECT_TIMEOUT            5                                delivery connect timeout, seconds
HIEM_READ_TIMEOUT               20                               delivery read timeout, seconds
HIEM_MAX_ATTEMPTS               12                               delivery attempts before dead
HIEM_MAX_AGE                    86400                            seconds after which a delivery is dead
HIEM_BACKOFF_BASE               2                                first retry delay, seconds (doubles)
HIEM_BACKOFF_MAX                900                              retry delay ceiling, seconds
HIEM_VISIBILITY_TIMEOUT         60                               in-flight lease; sweeper re-queues after
HIEM_SWEEP_INTERVAL             2                                seconds between sweeper passes
HIEM_FANOUT_BATCH               500                              deliveries created/enqueued per batch
HIEM_WORKER_CONCURRENCY         8                                embedded worker threads
HIEM_ORDERED_DELIVERY           0                                1 = per-subscription order (costs throughput)
HIEM_CONSUMER_CONCURRENCY       4                                concurrent POSTs per consumer, per process
HIEM_BREAKER_THRESHOLD          5                                failures in a row that park a consumer
HIEM_BREAKER_PARK               30                               first park, seconds (doubles, max 900)
HIEM_ALLOW_PRIVATE_CONSUMERS    0                                1 = loopback/private consumer addresses ok
HIEM_AUDIT_TRANSPORT            (empty: keep records local)      ``tls`` (RFC 5425) or ``udp`` (RFC 5426)
HIEM_AUDIT_HOST / _PORT         - / 6514 (tls), 514 (udp)        the Audit Record Repository
HIEM_AUDIT_CA / _CERT / _KEY    -                                TLS trust anchors and client certificate
HIEM_AUDIT_SOURCE_ID            this host's FQDN                 AuditSourceIdentification AuditSourceID
HIEM_AUDIT_SITE                 -                                AuditEnterpriseSiteID
HIEM_AUDIT_RETENTION_DAYS       2190                             records older than this are purged (only
                                                                 shipped ones when shipping)
HIEM_TLS_CERT / HIEM_TLS_KEY    -                                serve HTTPS with this certificate and key
HIEM_TLS_CLIENT_CA              -                                require client certificates from this CA
HIEM_DELIVERY_CA                system trust store               CA bundle for verifying consumers
HIEM_DELIVERY_CLIENT_CERT/_KEY  -                                client certificate presented to consumers
HIEM_DEFAULT_LEASE              (empty: no end)                  xs:duration given when Subscribe asks none
HIEM_MAX_LEASE                  (empty: unlimited)               longest lease Subscribe/Renew may ask
HIEM_IDP_CERTS                  (required outside dev)           PEM files of trusted SAML IdPs, comma-separated
HIEM_SIGNER_CERTS               -                                PEM files of pinned message signers (sender-vouches)
HIEM_REQUIRE_SIGNATURE          1                                require a WS-Security message signature
HIEM_CLOCK_SKEW                 120                              seconds of clock skew tolerated
HIEM_AUDIENCE                   -                                expected SAML AudienceRestriction value
HIEM_SIGNING_KEY / _CERT        dev: generated; else required    the broker's key and certificate (PEM)
HIEM_ORGANIZATION / _ID         hiem / urn:oid:2.16.840.1.113883.3.0   the broker's organization (its assertions)
HIEM_HOME_COMMUNITY_ID          urn:oid:2.16.840.1.113883.3.0    the broker's home community id
HIEM_DEV_DIR                    .hiem-dev                        where dev mode keeps its generated identity
HIEM_ASSERTION_LIFETIME         300                              seconds the broker's own assertion is valid
                                                                 (one per window on every Notify; minimum 30)
HIEM_PULL_MAX_MESSAGES          10000                            messages a pull point keeps (oldest dropped)
HIEM_PULL_MAX_AGE               P7D                              how long a pull point keeps a message
HIEM_ENDPOINT_CHECK             0                                1 = test Notify to the consumer before a
                                                                 subscription becomes active
HIEM_MIN_HEARTBEAT              10                               shortest heartbeat interval granted, seconds
HIEM_RETAIN_DELIVERED           P7D                              delivered (and cancelled) deliveries kept
HIEM_RETAIN_DEAD                P30D                             dead deliveries kept (the redelivery queue)
HIEM_RETAIN_NOTIFICATIONS       P7D                              a notification's body kept at least this
                                                                 long, and while any delivery still needs it
HIEM_RETAIN_ENDED               P30D                             ended subscriptions (unsubscribed, expired)
                                                                 and destroyed pull points kept, with what
                                                                 is left of their deliveries
HIEM_PURGE_INTERVAL             60                               seconds between purges (by the sweeper)
HIEM_PURGE_BATCH                1000                             rows deleted per transaction
HIEM_OPS_SECRET                 (empty)                          HMAC key signing console sessions; set the
                                                                 same value on every web process
HIEM_OPS_SECRET_FILE            hiem-ops.secret                  used when HIEM_OPS_SECRET is empty: read,
                                                                 or generated (mode 0600) when missing. In
                                                                 dev mode an in-memory key is used instead
HIEM_OPS_SESSION_HOURS          12                               a console login lasts this long
HIEM_OPS_POLL_SECONDS           5                                how often console pages refresh themselves
HIEM_METRICS_TOKEN              (empty: no authentication)       /metrics then needs ``Authorization:
                                                                 Bearer <token>``
HIEM_DEV                        0                                1 = dev mode for every process (``serve
                                                                 --dev`` and ``worker --dev`` say the same)
=============================== ================================ ==========================================

A malformed value raises :class:`hiem.errors.ConfigError` naming the variable and the value.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TypeVar

from hiem.durations import parse_duration
from hiem.errors import ConfigError
from hiem.xmlsafe import XmlLimits

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///hiem.db"


@dataclass(frozen=True)
class DeliverySettings:
    """How hard and how long hiem tries to hand a Notify to a consumer."""

    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    max_attempts: int = 12
    max_age_seconds: float = 86_400.0
    backoff_base: float = 2.0
    backoff_max: float = 900.0
    visibility_timeout: float = 60.0
    sweep_interval: float = 2.0
    fanout_batch: int = 500
    allow_private_addresses: bool = False
    ordered: bool = False
    consumer_concurrency: int = 4
    breaker_threshold: int = 5
    breaker_park_seconds: float = 30.0
    ca_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""


@dataclass(frozen=True)
class TlsSettings:
    """HTTPS for ``hiem serve``; with ``client_ca_file`` every client must present a certificate it signed."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True)
class SecuritySettings:
    """Inbound checks (SAML, signatures) and the broker's own signing identity."""

    idp_certs: tuple[str, ...] = ()
    signer_certs: tuple[str, ...] = ()
    require_signature: bool = True
    clock_skew: float = 120.0
    audience: str = ""
    signing_key: str = ""
    signing_cert: str = ""
    organization: str = "hiem"
    organization_id: str = "urn:oid:2.16.840.1.113883.3.0"
    home_community_id: str = "urn:oid:2.16.840.1.113883.3.0"
    dev_dir: str = ".hiem-dev"
    #: the broker's holder-of-key assertion rides on every Notify of this window, then a new one is minted
    assertion_lifetime: float = 300.0


@dataclass(frozen=True)
class AuditSettings:
    """Where the ATNA audit records go (records are always kept in the database first)."""

    transport: str = ""
    host: str = ""
    port: int = 6514
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    source_id: str = ""
    site: str = ""
    retention_days: float = 2190.0

    @property
    def shipping(self) -> bool:
        return bool(self.transport)


@dataclass(frozen=True)
class RetentionSettings:
    """How long finished rows are kept; the sweeper deletes older ones in small batches."""

    delivered: timedelta = timedelta(days=7)
    dead: timedelta = timedelta(days=30)
    notifications: timedelta = timedelta(days=7)
    #: unsubscribed or expired subscriptions (and destroyed pull points) kept for the operators
    ended: timedelta = timedelta(days=30)
    interval: float = 60.0
    batch: int = 1000


@dataclass(frozen=True)
class ConsoleSettings:
    """The operators' console and /metrics (``HIEM_OPS_*``, ``HIEM_METRICS_TOKEN``)."""

    secret: str = ""
    secret_file: str = ""
    session_hours: float = 12.0
    poll_seconds: float = 5.0
    metrics_token: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything configurable, grouped; build it with :func:`load_settings`."""

    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = ""
    queue: str = "hiem"
    db_pool: int = 5
    sqlite_synchronous: str = "FULL"
    public_url: str = ""
    topics_dir: str = "topics"
    default_lease: str = ""
    endpoint_check: bool = False
    min_heartbeat: float = 10.0
    pull_max_messages: int = 10_000
    pull_max_age: str = "P7D"
    max_lease: str = ""
    dev: bool = False
    worker_concurrency: int = 8
    xml_limits: XmlLimits = field(default_factory=XmlLimits)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)

    @property
    def embedded(self) -> bool:
        """No broker configured: Celery runs its worker inside the ``hiem serve`` process."""
        return not self.broker_url

    def with_dev(self) -> Settings:
        """The dev-mode variant: private/loopback consumers allowed (the policy, not scattered ifs)."""
        return replace(self, dev=True, delivery=replace(self.delivery, allow_private_addresses=True))


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(raw)


def _read(env: Mapping[str, str], name: str, cast: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {cast.__name__.lstrip('_')}") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _duration(env: Mapping[str, str], name: str, default: str) -> timedelta:
    text = _read(env, name, str, default).strip()
    try:
        value = parse_duration(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an xs:duration (e.g. P7D, PT12H)") from None
    if value <= timedelta(0):
        raise ConfigError(f"{name}={text!r} must be positive")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    d = DeliverySettings()
    delivery = DeliverySettings(
        connect_timeout=_read(env, "HIEM_CONNECT_TIMEOUT", float, d.connect_timeout),
        read_timeout=_read(env, "HIEM_READ_TIMEOUT", float, d.read_timeout),
        max_attempts=_read(env, "HIEM_MAX_ATTEMPTS", int, d.max_attempts),
        max_age_seconds=_read(env, "HIEM_MAX_AGE", float, d.max_age_seconds),
        backoff_base=_read(env, "HIEM_BACKOFF_BASE", float, d.backoff_base),
        backoff_max=_read(env, "HIEM_BACKOFF_MAX", float, d.backoff_max),
        visibility_timeout=_read(env, "HIEM_VISIBILITY_TIMEOUT", float, d.visibility_timeout),
        sweep_interval=_read(env, "HIEM_SWEEP_INTERVAL", float, d.sweep_interval),
        fanout_batch=max(1, _read(env, "HIEM_FANOUT_BATCH", int, d.fanout_batch)),
        allow_private_addresses=_read(env, "HIEM_ALLOW_PRIVATE_CONSUMERS", _bool, d.allow_private_addresses),
        ordered=_read(env, "HIEM_ORDERED_DELIVERY", _bool, d.ordered),
        consumer_concurrency=max(1, _read(env, "HIEM_CONSUMER_CONCURRENCY", int, d.consumer_concurrency)),
        breaker_threshold=max(1, _read(env, "HIEM_BREAKER_THRESHOLD", int, d.breaker_threshold)),
        breaker_park_seconds=_read(env, "HIEM_BREAKER_PARK", float, d.breaker_park_seconds),
        ca_file=_read(env, "HIEM_DELIVERY_CA", str, ""),
        client_cert_file=_read(env, "HIEM_DELIVERY_CLIENT_CERT", str, ""),
        client_key_file=_read(env, "HIEM_DELIVERY_CLIENT_KEY", str, ""),
    )
    limits = XmlLimits(
        max_bytes=_read(env, "HIEM_MAX_REQUEST_BYTES", int, XmlLimits.max_bytes),
        # libxml2 refuses documents deeper than 256 without XML_PARSE_HUGE, which hiem never sets
        max_depth=min(256, _read(env, "HIEM_MAX_XML_DEPTH", int, XmlLimits.max_depth)),
        max_elements=_read(env, "HIEM_MAX_XML_ELEMENTS", int, XmlLimits.max_elements),
    )
    transport = _read(env, "HIEM_AUDIT_TRANSPORT", str, "").strip().lower()
    if transport not in {"", "tls", "udp"}:
        raise ConfigError(f"HIEM_AUDIT_TRANSPORT={transport!r} must be tls, udp or empty")
    audit = AuditSettings(
        transport=transport,
        host=_read(env, "HIEM_AUDIT_HOST", str, ""),
        port=_read(env, "HIEM_AUDIT_PORT", int, 514 if transport == "udp" else 6514),
        ca_file=_read(env, "HIEM_AUDIT_CA", str, ""),
        cert_file=_read(env, "HIEM_AUDIT_CERT", str, ""),
        key_file=_read(env, "HIEM_AUDIT_KEY", str, ""),
        source_id=_read(env, "HIEM_AUDIT_SOURCE_ID", str, "") or socket.getfqdn(),
        site=_read(env, "HIEM_AUDIT_SITE", str, ""),
        retention_days=_read(env, "HIEM_AUDIT_RETENTION_DAYS", float, 2190.0),
    )
    if transport and not audit.host:
        raise ConfigError("HIEM_AUDIT_TRANSPORT is set but HIEM_AUDIT_HOST is empty")
    if transport == "tls" and not audit.ca_file:
        raise ConfigError("HIEM_AUDIT_TRANSPORT=tls needs HIEM_AUDIT_CA (the repository's CA certificate)")
    tls = TlsSettings(
        cert_file=_read(env, "HIEM_TLS_CERT", str, ""),
        key_file=_read(env, "HIEM_TLS_KEY", str, ""),
        client_ca_file=_read(env, "HIEM_TLS_CLIENT_CA", str, ""),
    )
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("HIEM_TLS_CERT and HIEM_TLS_KEY must be set together")
    if tls.client_ca_file and not tls.enabled:
        raise ConfigError("HIEM_TLS_CLIENT_CA needs HIEM_TLS_CERT and HIEM_TLS_KEY (client certificates need TLS)")
    def _paths(name: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in _read(env, name, str, "").split(",") if p.strip())

    security = SecuritySettings(
        idp_certs=_paths("HIEM_IDP_CERTS"),
        signer_certs=_paths("HIEM_SIGNER_CERTS"),
        require_signature=_read(env, "HIEM_REQUIRE_SIGNATURE", _bool, True),
        clock_skew=_read(env, "HIEM_CLOCK_SKEW", float, 120.0),
        audience=_read(env, "HIEM_AUDIENCE", str, ""),
        signing_key=_read(env, "HIEM_SIGNING_KEY", str, ""),
        signing_cert=_read(env, "HIEM_SIGNING_CERT", str, ""),
        organization=_read(env, "HIEM_ORGANIZATION", str, "hiem"),
        organization_id=_read(env, "HIEM_ORGANIZATION_ID", str, SecuritySettings.organization_id),
        home_community_id=_read(env, "HIEM_HOME_COMMUNITY_ID", str, SecuritySettings.home_community_id),
        dev_dir=_read(env, "HIEM_DEV_DIR", str, ".hiem-dev"),
        assertion_lifetime=max(30.0, _read(env, "HIEM_ASSERTION_LIFETIME", float, 300.0)),
    )
    settings = Settings(
        database_url=_read(env, "HIEM_DATABASE_URL", str, DEFAULT_DATABASE_URL),
        broker_url=_read(env, "HIEM_BROKER_URL", str, ""),
        queue=_read(env, "HIEM_QUEUE", str, "hiem"),
        db_pool=max(1, _read(env, "HIEM_DB_POOL", int, 5)),
        sqlite_synchronous=_read(env, "HIEM_SQLITE_SYNCHRONOUS", str, "FULL").upper(),
        public_url=_read(env, "HIEM_PUBLIC_URL", str, "").rstrip("/"),
        topics_dir=_read(env, "HIEM_TOPICS_DIR", str, "topics"),
        default_lease=_read(env, "HIEM_DEFAULT_LEASE", str, ""),
        pull_max_messages=max(1, _read(env, "HIEM_PULL_MAX_MESSAGES", int, 10_000)),
        endpoint_check=_read(env, "HIEM_ENDPOINT_CHECK", _bool, False),
        min_heartbeat=_read(env, "HIEM_MIN_HEARTBEAT", float, 10.0),
        pull_max_age=_read(env, "HIEM_PULL_MAX_AGE", str, "P7D"),
        max_lease=_read(env, "HIEM_MAX_LEASE", str, ""),
        worker_concurrency=max(1, _read(env, "HIEM_WORKER_CONCURRENCY", int, 8)),
        xml_limits=limits,
        delivery=delivery,
        audit=audit,
        tls=tls,
        security=security,
        retention=RetentionSettings(
            delivered=_duration(env, "HIEM_RETAIN_DELIVERED", "P7D"),
            dead=_duration(env, "HIEM_RETAIN_DEAD", "P30D"),
            notifications=_duration(env, "HIEM_RETAIN_NOTIFICATIONS", "P7D"),
            ended=_duration(env, "HIEM_RETAIN_ENDED", "P30D"),
            interval=max(1.0, _read(env, "HIEM_PURGE_INTERVAL", float, 60.0)),
            batch=max(1, _read(env, "HIEM_PURGE_BATCH", int, 1000)),
        ),
        console=ConsoleSettings(
            secret=_read(env, "HIEM_OPS_SECRET", str, ""),
            secret_file=_read(env, "HIEM_OPS_SECRET_FILE", str, ""),
            session_hours=max(60 / 3600, _read(env, "HIEM_OPS_SESSION_HOURS", float, 12.0)),
            poll_seconds=max(1.0, _read(env, "HIEM_OPS_POLL_SECONDS", float, 5.0)),
            metrics_token=_read(env, "HIEM_METRICS_TOKEN", str, ""),
        ),
    )
    if _read(env, "HIEM_DEV", _bool, False):
        settings = settings.with_dev()
    return settings

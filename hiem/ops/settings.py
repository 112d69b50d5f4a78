"""The operators' console settings (``HIEM_OPS_*``, ``HIEM_METRICS_TOKEN``), read like :mod:`hiem.config`.

They live here rather than in :class:`hiem.config.Settings` so the console stays one removable package;
the same rules apply: read once, frozen, a malformed value is a :class:`hiem.errors.ConfigError`.

=============================== ================================ ==========================================
variable                        default                          meaning
=============================== ================================ ==========================================
HIEM_OPS_SECRET                 (empty)                          HMAC key signing console sessions; set the
                                                                 same value on every web process
HIEM_OPS_SECRET_FILE            hiem-ops.secret                  used when HIEM_OPS_SECRET is empty: read,
                                                                 or generated (mode 0600) when missing. In
                                                                 dev mode an in-memory key is used instead
HIEM_OPS_SESSION_HOURS          12                               a console login lasts this long
HIEM_OPS_POLL_SECONDS           5                                how often console pages refresh themselves
HIEM_METRICS_TOKEN              (empty: no authentication)       /metrics then needs ``Authorization:
                                                                 Bearer <token>``
=============================== ================================ ==========================================
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hiem.config import _read
from hiem.errors import ConfigError

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class OpsSettings:
    """What the console and /metrics need beyond :class:`hiem.config.Settings`."""

    secret: bytes
    session_seconds: float = 12 * 3600.0
    poll_seconds: float = 5.0
    metrics_token: str = ""


def load_ops_settings(dev: bool, env: Mapping[str, str] | None = None) -> OpsSettings:
    """Read the console settings; ``dev`` allows a throw-away signing key (sessions end with the process)."""
    env = os.environ if env is None else env
    return OpsSettings(
        secret=_secret(env, dev),
        session_seconds=max(60.0, _read(env, "HIEM_OPS_SESSION_HOURS", float, 12.0) * 3600.0),
        poll_seconds=max(1.0, _read(env, "HIEM_OPS_POLL_SECONDS", float, 5.0)),
        metrics_token=_read(env, "HIEM_METRICS_TOKEN", str, ""),
    )


def _secret(env: Mapping[str, str], dev: bool) -> bytes:
    raw = env.get("HIEM_OPS_SECRET", "")
    if raw:
        if len(raw.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"HIEM_OPS_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                              "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return raw.encode()
    path = env.get("HIEM_OPS_SECRET_FILE", "")
    if not path and dev:
        # A dev console lives as long as its process: no key file left in the working directory.
        return secrets.token_bytes(32)
    return secret_from_file(Path(path or "hiem-ops.secret"))


def secret_from_file(path: Path) -> bytes:
    """Read the signing key, creating it (owner-only) on first use so a restart keeps sessions valid."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        _create_secret_file(path)
        return secret_from_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the console key file {path} ({exc.strerror})") from None
    if len(data) < MIN_SECRET_BYTES:
        raise ConfigError(f"the console key file {path} holds fewer than {MIN_SECRET_BYTES} bytes")
    return data


def _create_secret_file(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place: two processes starting together never see
    a half-written file, and the loser of the race simply reads the winner's key."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode() + b"\n")
        try:
            os.link(temp, path)
            log.info("generated the console session key in %s", path)
        except FileExistsError:
            pass
    except OSError as exc:
        raise ConfigError(f"cannot create the console key file {path} ({exc.strerror}); set "
                          "HIEM_OPS_SECRET or HIEM_OPS_SECRET_FILE") from None
    finally:
        temp.unlink(missing_ok=True)

"""The console's settings in the form it uses them: the session signing key resolved (read from
``HIEM_OPS_SECRET``, or from its key file, generated on first use), the rest from
:class:`hiem.config.ConsoleSettings`. A malformed value is a :class:`hiem.errors.ConfigError`.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hiem.config import Settings
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


def load_ops_settings(settings: Settings) -> OpsSettings:
    """The console's settings; dev mode allows a throw-away signing key (sessions end with the process)."""
    console = settings.console
    return OpsSettings(
        secret=_secret(console.secret, console.secret_file, settings.dev),
        session_seconds=console.session_hours * 3600.0,
        poll_seconds=console.poll_seconds,
        metrics_token=console.metrics_token,
    )


def _secret(raw: str, path: str, dev: bool) -> bytes:
    if raw:
        if len(raw.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"HIEM_OPS_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                              "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return raw.encode()
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

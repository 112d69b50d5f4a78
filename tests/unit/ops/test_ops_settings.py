"""Where the session key comes from: HIEM_OPS_SECRET, a key file (generated once), or dev's throw-away key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hiem.config import load_settings
from hiem.errors import ConfigError
from hiem.ops.settings import OpsSettings
from hiem.ops.settings import load_ops_settings as _load


def load_ops_settings(dev: bool, env: dict[str, str]) -> OpsSettings:
    """The console settings from this environment, read through hiem.config as every process reads them."""
    settings = load_settings(env)
    return _load(settings.with_dev() if dev else settings)


def test_secret_from_the_environment() -> None:
    settings = load_ops_settings(False, {"HIEM_OPS_SECRET": "x" * 40, "HIEM_OPS_SESSION_HOURS": "2",
                                         "HIEM_OPS_POLL_SECONDS": "3", "HIEM_METRICS_TOKEN": "t"})
    assert (settings.secret, settings.session_seconds, settings.poll_seconds, settings.metrics_token) == (
        b"x" * 40, 7200.0, 3.0, "t")


def test_a_short_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="HIEM_OPS_SECRET"):
        load_ops_settings(False, {"HIEM_OPS_SECRET": "short"})


def test_key_file_is_generated_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "ops.secret"
    first = load_ops_settings(False, {"HIEM_OPS_SECRET_FILE": str(path)}).secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_ops_settings(False, {"HIEM_OPS_SECRET_FILE": str(path)}).secret == first
    assert list(tmp_path.iterdir()) == [path], "no temporary file left behind"


def test_default_key_file_is_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret = load_ops_settings(False, {}).secret
    assert (tmp_path / "hiem-ops.secret").read_bytes().strip() == secret


def test_dev_mode_uses_a_throw_away_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_ops_settings(True, {}).secret != load_ops_settings(True, {}).secret
    assert list(tmp_path.iterdir()) == []


def test_unusable_key_files(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="fewer than"):
        load_ops_settings(False, {"HIEM_OPS_SECRET_FILE": str(short)})
    with pytest.raises(ConfigError, match="cannot create"):
        load_ops_settings(False, {"HIEM_OPS_SECRET_FILE": str(tmp_path / "missing-dir" / "key")})


def test_malformed_numbers_are_refused() -> None:
    with pytest.raises(ConfigError, match="HIEM_OPS_POLL_SECONDS"):
        load_ops_settings(True, {"HIEM_OPS_POLL_SECONDS": "soon"})

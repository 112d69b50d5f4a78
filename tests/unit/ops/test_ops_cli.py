"""``hiem operators add``, ``hiem status [--json]`` and the progress-bar commands, run through ``hiem.cli.main``."""

from __future__ import annotations

import io
import json

import pytest

from hiem.cli.main import main
from hiem.ops import operators
from hiem.store.db import Database
from hiem.store.models import Delivery, OperatorAction
from tests.unit.ops.conftest import Seeded


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, db: Database) -> Database:
    monkeypatch.setenv("HIEM_DATABASE_URL", str(db.url))
    return db


def test_operators_add_from_stdin(env: Database, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a fine password\n"))
    assert main(["operators", "add", "olga", "--role", "viewer", "--password-stdin"]) == 0
    assert "operator olga added (viewer)" in capsys.readouterr().out
    with env.session() as session:
        row = operators.authenticate(session, "olga", "a fine password")
        assert row is not None and row.role == "viewer"
    monkeypatch.setattr("sys.stdin", io.StringIO("a fine password\n"))
    assert main(["operators", "add", "olga", "--role", "viewer", "--password-stdin"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["operators", "list"]) == 0
    assert "olga" in capsys.readouterr().out


def test_operators_add_prompts_twice(env: Database, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["first password", "other password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["operators", "add", "pat", "--role", "admin"]) == 1
    assert "differ" in capsys.readouterr().err


def test_status_text_and_json(env: Database, seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert "dead letters    1" in text and "delivered 1" in text and "embedded mode" in text
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dead_letters"] == 1 and data["deliveries_by_state"]["delivered"] == 1
    assert data["latency_seconds"]["p50"] == 2.0
    assert data["queue"]["mode"] == "embedded" and data["queue"]["depth"] is None


def test_replay_all_dead_with_progress(env: Database, seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deliveries", "redeliver", "--all-dead"]) == 0
    out, err = capsys.readouterr()
    assert f"redelivering 1 deliveries ({seeded.dead})" in out
    assert "redelivering dead deliveries" in err and "1/1" in err, "the progress bar goes to stderr"
    with env.session() as session:
        assert session.get(Delivery, seeded.dead).state == "retrying"  # type: ignore[union-attr]
        (action,) = session.query(OperatorAction).all()
        assert action.username.startswith("cli:") and action.outcome == "1 dead deliveries redelivered"


def test_topics_load_with_progress(env: Database, capsys: pytest.CaptureFixture[str]) -> None:
    from hiem.app.bootstrap import BUNDLED_TOPICS

    files = [str(p) for p in sorted(BUNDLED_TOPICS.glob("*.xml"))]
    assert main(["topics", "load", *files]) == 0
    out, err = capsys.readouterr()
    assert "0 topics added" in out and "loading topic documents" in err


def test_status_lines_in_distributed_mode(db: Database, seeded: Seeded) -> None:
    from hiem.cli.ops import status_lines
    from hiem.ops import stats
    from hiem.ops.queue import QueueStatus

    with db.session() as session:
        snap = stats.snapshot(session)
    lines = list(status_lines(snap, QueueStatus("distributed", "hiem", 3, ["celery@a"])))
    assert "workers seen    1 (celery@a)" in lines and "queue depth     3 in hiem" in lines
    lines = list(status_lines(snap, QueueStatus("distributed", "hiem", None, None, "queue depth unavailable")))
    assert "workers seen    ?" in lines and "note            queue depth unavailable" in lines

"""Topic ids: found once, then answered from memory; a tree loaded later by another process is still found."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event

from hiem.app.bootstrap import open_database
from hiem.config import load_settings
from hiem.store import topics as topic_store
from hiem.wstopics import TopicPath, parse_topic_namespace

TREE = b"""<wstop:TopicNamespace xmlns:wstop="http://docs.oasis-open.org/wsn/t-1" name="later"
    targetNamespace="urn:example:later"><wstop:Topic name="Alpha"><wstop:Topic name="Beta"/></wstop:Topic>
</wstop:TopicNamespace>"""


def _database(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_database(load_settings({"HIEM_DEV": "1", "HIEM_DATABASE_URL": f"sqlite:///{tmp_path}/hiem.db"}))


def test_a_found_topic_is_not_looked_up_again_and_a_later_tree_is_found(tmp_path):
    broker, loader = _database(tmp_path), _database(tmp_path)  # two engines: two processes
    beta = TopicPath("urn:example:later", ("Alpha", "Beta"))
    statements: list[str] = []
    event.listen(broker.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: statements.append(statement))
    try:
        with broker.session() as session:
            assert topic_store.topic_id(session, beta) is None  # not loaded yet: asked, and not remembered
        with loader.session() as session:
            topic_store.load_namespace(session, parse_topic_namespace(TREE))
        with broker.session() as session:
            first = topic_store.topic_id(session, beta)
        assert first is not None
        asked = len([s for s in statements if "topic" in s.lower()])
        with broker.session() as session:
            assert topic_store.topic_id(session, beta) == first
        assert len([s for s in statements if "topic" in s.lower()]) == asked
    finally:
        broker.dispose()
        loader.dispose()

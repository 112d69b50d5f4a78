"""Start-up steps shared by the CLI commands: open and migrate the database, load the topic trees."""

from __future__ import annotations

import logging
from pathlib import Path

from hiem.config import Settings
from hiem.store import subscriptions
from hiem.store import topics as topic_store
from hiem.store.db import Database
from hiem.store.migrate import upgrade
from hiem.wstopics import TopicDialect, parse_expression, parse_topic_namespace

log = logging.getLogger(__name__)

#: the topic documents shipped with hiem (the GIPSE tree), used when HIEM_TOPICS_DIR does not exist
BUNDLED_TOPICS = Path(__file__).resolve().parent.parent / "data" / "topics"


def open_database(settings: Settings, migrate: bool = True) -> Database:
    database = Database(settings.database_url, settings.db_pool, settings.sqlite_synchronous)
    if migrate:
        upgrade(database)
    return database


def topic_files(settings: Settings) -> list[Path]:
    folder = Path(settings.topics_dir)
    if not folder.is_dir():
        folder = BUNDLED_TOPICS
    return sorted(folder.glob("*.xml"))


def load_topic_files(database: Database, files: list[Path]) -> list[topic_store.LoadResult]:
    """Load TopicNamespace documents (idempotent) and extend wildcard subscriptions to new topics."""
    results = []
    with database.session() as session:
        for path in files:
            doc = parse_topic_namespace(path.read_bytes())
            results.append(topic_store.load_namespace(session, doc, source=str(path)))
        if any(r.added for r in results):
            known = topic_store.all_topics(session)
            for sub in subscriptions.active_wildcards(session):
                expression = parse_expression(sub.topic_expression, TopicDialect(sub.dialect),
                                              sub.topic_namespaces)
                subscriptions.add_topics(session, sub.id, [known[t] for t in expression.expand(known)])
    return results

"""Topic trees in the database: loading TopicNamespace documents, resolving topics, listing trees."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hiem.clock import utcnow
from hiem.store.models import TopicNamespaceRow, TopicRow
from hiem.wstopics import TopicNamespace, TopicPath


@dataclass(frozen=True)
class LoadResult:
    namespace: str
    added: int
    existing: int


def load_namespace(session: Session, doc: TopicNamespace, source: str | None = None) -> LoadResult:
    """Insert the namespace's topics that are not there yet (idempotent; never deletes)."""
    ns_row = session.scalar(select(TopicNamespaceRow).where(TopicNamespaceRow.uri == doc.target_namespace))
    if ns_row is None:
        ns_row = TopicNamespaceRow(uri=doc.target_namespace, name=doc.name, final=doc.final, source=source,
                                   loaded_at=utcnow())
        session.add(ns_row)
        session.flush()
    else:
        ns_row.name, ns_row.final, ns_row.source, ns_row.loaded_at = doc.name, doc.final, source, utcnow()
    existing = {row.path: row for row in session.scalars(select(TopicRow).where(TopicRow.namespace_id == ns_row.id))}
    added = 0
    # document order guarantees parents come before their children
    for node in doc.nodes:
        key = "/".join(node.path.path)
        if key in existing:
            existing[key].final = node.final
            continue
        parent = existing.get("/".join(node.path.path[:-1])) if len(node.path.path) > 1 else None
        row = TopicRow(namespace_id=ns_row.id, parent_id=parent.id if parent else None,
                       name=node.path.path[-1], path=key, final=node.final)
        session.add(row)
        session.flush()
        existing[key] = row
        added += 1
    return LoadResult(doc.target_namespace, added, len(existing) - added)


#: per database (engine): (namespace, path) -> topic id, for topics found once. Every Subscribe and Notify
#: looks a topic up; topics are only ever added (never renamed, renumbered or deleted), so an id once
#: found stays right, and a topic loaded later by another process is found on its first miss.
_found_ids: weakref.WeakKeyDictionary[object, dict[tuple[str, str], int]] = weakref.WeakKeyDictionary()
_found_ids_guard = threading.Lock()


def topic_id(session: Session, topic: TopicPath) -> int | None:
    """The id of a topic in the loaded trees, or None when no tree has it."""
    key = (topic.namespace, "/".join(topic.path))
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    with _found_ids_guard:
        found = _found_ids.setdefault(engine, {})
    if key in found:
        return found[key]
    topic_row_id = session.scalar(
        select(TopicRow.id)
        .join(TopicNamespaceRow, TopicRow.namespace_id == TopicNamespaceRow.id)
        .where(TopicNamespaceRow.uri == key[0], TopicRow.path == key[1])
    )
    if topic_row_id is not None:
        found[key] = topic_row_id
    return topic_row_id


def all_topics(session: Session) -> dict[TopicPath, int]:
    """Every known topic with its id (trees are small: hundreds of nodes, not millions)."""
    rows = session.execute(
        select(TopicNamespaceRow.uri, TopicRow.path, TopicRow.id).join(
            TopicNamespaceRow, TopicRow.namespace_id == TopicNamespaceRow.id)
    )
    return {TopicPath(uri, tuple(path.split("/"))): id_ for uri, path, id_ in rows}


def paths_of(session: Session, ids: Iterable[int]) -> list[TopicPath]:
    rows = session.execute(
        select(TopicNamespaceRow.uri, TopicRow.path).join(
            TopicNamespaceRow, TopicRow.namespace_id == TopicNamespaceRow.id).where(TopicRow.id.in_(list(ids))))
    return [TopicPath(uri, tuple(path.split("/"))) for uri, path in rows]


def namespace_documents(session: Session) -> list[TopicNamespace]:
    """The loaded trees as TopicNamespace values (for the wstop:TopicSet resource property)."""
    from hiem.wstopics import TopicNode

    docs = []
    for ns_row in namespaces(session):
        paths = session.scalars(select(TopicRow.path).where(TopicRow.namespace_id == ns_row.id).order_by(TopicRow.path))
        nodes = tuple(TopicNode(TopicPath(ns_row.uri, tuple(p.split("/")))) for p in paths)
        docs.append(TopicNamespace(target_namespace=ns_row.uri, name=ns_row.name, final=ns_row.final, nodes=nodes))
    return docs


def namespaces(session: Session) -> list[TopicNamespaceRow]:
    return list(session.scalars(select(TopicNamespaceRow).order_by(TopicNamespaceRow.uri)))


def tree_rows(session: Session) -> list[tuple[str, str]]:
    """(namespace uri, path) for every topic, sorted so each tree reads top-down."""
    rows = session.execute(
        select(TopicNamespaceRow.uri, TopicRow.path).join(
            TopicNamespaceRow, TopicRow.namespace_id == TopicNamespaceRow.id).order_by(
            TopicNamespaceRow.uri, TopicRow.path)
    )
    return [(uri, path) for uri, path in rows]

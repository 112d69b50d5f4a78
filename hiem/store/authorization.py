"""The authorization policy: organizations allowed to subscribe to / publish on topic subtrees.

A rule names an organization (the SAML ``organization-id`` attribute, falling back to ``organization``),
an action and a topic subtree (namespace plus a path prefix, "" for the whole namespace). A Subscribe is
allowed when every topic its expression covers is under a ``subscribe`` rule of the caller's
organization; a Notify when its topic is under a ``publish`` rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hiem.clock import utcnow
from hiem.store.models import AuthorizationRule
from hiem.wstopics import TopicPath

ACTIONS = ("subscribe", "publish")


def add(session: Session, organization: str, action: str, topic: TopicPath | None, namespace: str) -> AuthorizationRule:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}")
    rule = AuthorizationRule(organization=organization, action=action, topic_namespace=namespace,
                             topic_prefix="/".join(topic.path) if topic else "", created_at=utcnow())
    session.add(rule)
    session.flush()
    return rule


def remove(session: Session, rule_id: int) -> bool:
    return session.execute(delete(AuthorizationRule).where(AuthorizationRule.id == rule_id)).rowcount == 1


def rules(session: Session) -> list[AuthorizationRule]:
    return list(session.scalars(select(AuthorizationRule).order_by(AuthorizationRule.organization,
                                                                   AuthorizationRule.id)))


def _covers(prefix: str, path: tuple[str, ...]) -> bool:
    if not prefix:
        return True
    wanted = tuple(prefix.split("/"))
    return path[: len(wanted)] == wanted


def allowed(session: Session, organization: str | None, action: str, topics: Iterable[TopicPath]) -> bool:
    if not organization:
        return False
    mine = list(session.scalars(select(AuthorizationRule).where(
        AuthorizationRule.organization == organization, AuthorizationRule.action == action)))
    return all(any(r.topic_namespace == t.namespace and _covers(r.topic_prefix, t.path) for r in mine)
               for t in topics)

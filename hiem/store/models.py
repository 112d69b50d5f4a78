"""The database schema: topic trees, subscriptions, notifications (the outbox) and deliveries.

Design notes (docs/architecture.md has the whole picture):

* Topic trees are rows (namespace, parent, name, full path), loaded from TopicNamespace documents.
* A subscription's topic expression is compiled at Subscribe time into ``subscription_topics`` rows:
  the topic nodes it covers in the loaded trees. Matching a notification is then one indexed lookup by
  topic id, O(matches) whatever the number of subscriptions.
* ``notifications`` is the outbox: the row and its fan-out job (``fanout_state='pending'``) are written in
  the publisher's transaction; a sweeper re-enqueues anything stuck.
* ``deliveries`` has one row per (notification, subscription), unique, so re-running a fan-out never
  duplicates. The row is the state machine operators query.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class SubscriptionStatus(str, Enum):
    ACTIVE = "active"
    PAUSED = "paused"          # notifications are kept (as pending deliveries) and sent in order on resume
    UNSUBSCRIBED = "unsubscribed"
    EXPIRED = "expired"


class DeliveryState(str, Enum):
    PENDING = "pending"        # created, waiting for a worker (enqueued_at says when it was queued)
    IN_FLIGHT = "in_flight"    # claimed by a worker until lease_until
    RETRYING = "retrying"      # failed retryably; due again at next_attempt_at
    DELIVERED = "delivered"
    DEAD = "dead"              # final failure or attempts/age exhausted; can be redelivered
    CANCELLED = "cancelled"    # the subscription ended before the notification could be sent
    HELD = "held"              # the subscription is paused: kept, sent in order on resume
    STORED = "stored"          # waiting in a pull point for GetMessages
    DROPPED = "dropped"        # removed from a full or too old pull point (audited)


class FanoutState(str, Enum):
    PENDING = "pending"
    DONE = "done"


class TopicNamespaceRow(Base):
    __tablename__ = "topic_namespaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(String(1024), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str | None] = mapped_column(String(1024))
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TopicRow(Base):
    __tablename__ = "topics"
    __table_args__ = (UniqueConstraint("namespace_id", "path", name="uq_topics_namespace_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("topic_namespaces.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(2048))  # "GIPSE/Biosurveillance/InfluenzaLikeIllness"
    final: Mapped[bool] = mapped_column(Boolean, default=False)


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consumer_address: Mapped[str] = mapped_column(String(2048))
    consumer_reference_parameters: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    manager_address: Mapped[str] = mapped_column(String(2048))
    topic_expression: Mapped[str] = mapped_column(Text)
    dialect: Mapped[str] = mapped_column(String(255))
    topic_namespaces: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    is_wildcard: Mapped[bool] = mapped_column(Boolean, default=False)
    soap_version: Mapped[str] = mapped_column(String(8), default="1.2")
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE.value, index=True)
    subscriber: Mapped[str | None] = mapped_column(String(512))
    organization: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    termination_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: heartbeat Notify every this many seconds (hiem:Heartbeat extension), None = no heartbeats
    heartbeat_seconds: Mapped[float | None] = mapped_column(Float)
    next_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    #: the pull point this subscription's notifications are kept in (instead of being pushed)
    pull_point_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: XPath 1.0 MessageContent filter (compiled at Subscribe to check it) and its namespace context
    message_filter: Mapped[str | None] = mapped_column(Text)
    message_filter_namespaces: Mapped[dict[str, str] | None] = mapped_column(JSON, default=dict)
    #: the sequence number of its latest delivery: a fan-out counts on from it (see store.deliveries.fan_out)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: MessageContent evaluations that failed (timeout, error): counted and shown, never silent
    filter_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    filter_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    filter_error: Mapped[str | None] = mapped_column(String(512))


class SubscriptionTopic(Base):
    __tablename__ = "subscription_topics"
    __table_args__ = (Index("ix_subscription_topics_topic", "topic_id", "subscription_id"),)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_fanout", "fanout_state", "fanout_enqueued_at"),
                      Index("ix_notifications_received", "received_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str | None] = mapped_column(String(512))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    topic_namespace: Mapped[str] = mapped_column(String(1024))
    topic_path: Mapped[str] = mapped_column(String(2048))
    message_xml: Mapped[bytes] = mapped_column(LargeBinary)
    producer_reference: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    publisher: Mapped[str | None] = mapped_column(String(512))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fanout_state: Mapped[str] = mapped_column(String(16), default=FanoutState.PENDING.value)
    fanout_enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fanout_done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    matched: Mapped[int] = mapped_column(Integer, default=0)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "subscription_id", name="uq_deliveries_pair"),
        Index("ix_deliveries_state_due", "state", "next_attempt_at"),
        Index("ix_deliveries_subscription", "subscription_id", "notification_id"),
        Index("ix_deliveries_state_updated", "state", "updated_at"),
        UniqueConstraint("subscription_id", "sequence", name="uq_deliveries_sequence"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    #: per-subscription, gap-free, assigned at fan-out (the hiem:Sequence header)
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(512))
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Consumer(Base):
    """Per consumer origin (scheme://host:port): the circuit breaker's memory, shared by all workers."""

    __tablename__ = "consumers"
    origin: Mapped[str] = mapped_column(String(512), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    parked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    park_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(512))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRecord(Base):
    """An ATNA audit event, written in the transaction of the action it records, shipped later in id order."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_unshipped", "shipped_at", "id"),
                      Index("ix_audit_records_created", "created_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[int] = mapped_column(Integer)
    subscription_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(512))
    event: Mapped[dict] = mapped_column(JSON)
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Operator(Base):
    """A person allowed into the operators' console (``hiem operators add``); role admin or viewer."""

    __tablename__ = "operators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OperatorAction(Base):
    """What an operator did from the console or CLI (redeliver, unpark), kept for accountability."""

    __tablename__ = "operator_actions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    username: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(512))


class NonceEntry(Base):
    """Seen SAML assertion IDs and message IDs, until they expire (the security nonce cache, shared by
    every web process)."""

    __tablename__ = "security_nonces"
    __table_args__ = (Index("ix_security_nonces_expires", "expires_at"),)
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PurgeTotal(Base):
    """Rows the retention purge deleted so far, per kind (hiem.store.retention.KINDS)."""

    __tablename__ = "purge_totals"
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    last_purge_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HistoryTally(Base):
    """Rows that reached a final delivery state, or were received on a topic, with a timestamp up to
    ``through``, kept or purged since (folded by the sweeper: hiem.store.tallies)."""

    __tablename__ = "history_tallies"
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    through: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuthorizationRule(Base):
    """Which organization may subscribe to / publish on which topic subtree (namespace + path prefix)."""

    __tablename__ = "authorization_rules"
    __table_args__ = (UniqueConstraint("organization", "action", "topic_namespace", "topic_prefix",
                                       name="uq_authorization_rule"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization: Mapped[str] = mapped_column(String(512))
    action: Mapped[str] = mapped_column(String(16))  # subscribe | publish
    topic_namespace: Mapped[str] = mapped_column(String(1024))
    topic_prefix: Mapped[str] = mapped_column(String(2048))  # "" = the whole namespace
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PullPoint(Base):
    """A WS-BaseNotification pull point: notifications wait here until the consumer calls GetMessages."""

    __tablename__ = "pull_points"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    organization: Mapped[str | None] = mapped_column(String(512))

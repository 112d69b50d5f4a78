"""Putting many subscriptions into a broker's database.

Small N goes through SOAP (``load.subscribe_load``: real Subscribe requests, 32 concurrent clients).
Large N (>= 10,000) is cloned in SQL from a subscription that a real Subscribe created (the template):
every column of its ``subscriptions`` row is copied, only the id (a new uuid4, as Subscribe makes) and
created_at change, and its ``subscription_topics`` rows (the compiled topic set) are copied for each
clone. So a clone is what Subscribe would have written for the same request, without the HTTP/SOAP cost.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, select

from hiem.store.models import Subscription, SubscriptionTopic

BATCH = 5000


def clone_subscriptions(database_url: str, count: int, template_id: str | None = None) -> dict[str, float]:
    """Insert ``count`` copies of the template subscription (default: the newest one)."""
    subs, topics = Subscription.__table__, SubscriptionTopic.__table__
    engine = create_engine(database_url)
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            query = select(subs)
            query = query.where(subs.c.id == template_id) if template_id else \
                query.order_by(subs.c.created_at.desc()).limit(1)
            template = dict(conn.execute(query).mappings().one())
            topic_ids = list(conn.scalars(select(topics.c.topic_id).where(
                topics.c.subscription_id == template["id"])))
        done = 0
        while done < count:
            size = min(BATCH, count - done)
            now = datetime.now(UTC)
            ids = [str(uuid.uuid4()) for _ in range(size)]
            with engine.begin() as conn:
                conn.execute(subs.insert(), [{**template, "id": sid, "created_at": now} for sid in ids])
                conn.execute(topics.insert(), [{"subscription_id": sid, "topic_id": tid}
                                               for sid in ids for tid in topic_ids])
            done += size
    finally:
        engine.dispose()
    return {"cloned": count, "seconds": round(time.perf_counter() - started, 2), "topics_per_subscription":
            len(topic_ids)}

"""The security nonce cache shared by every web process: a key (issuer + assertion ID, or a signed wsa:MessageID)
may be seen once until it expires. The primary key makes "record if new" one atomic INSERT."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from hiem.clock import utcnow
from hiem.store.db import Database
from hiem.store.models import NonceEntry


class DatabaseNonceCache:
    """``seen(key, expires_at)``: True when the key was already recorded (and has not expired)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def seen(self, key: str, expires_at: datetime) -> bool:
        key = key[:512]
        try:
            with self.db.session() as session:
                session.execute(delete(NonceEntry).where(NonceEntry.key == key, NonceEntry.expires_at < utcnow()))
                session.add(NonceEntry(key=key, expires_at=expires_at))
        except IntegrityError:
            return True
        return False

    def purge(self) -> int:
        with self.db.session() as session:
            return session.execute(delete(NonceEntry).where(NonceEntry.expires_at < utcnow())).rowcount

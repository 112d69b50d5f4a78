"""The composition root: what one hiem process builds once, shared by its web and worker parts.

``hiem serve`` builds one :class:`~hiem.worker.runtime.Runtime` (settings, one Database, the audit trail,
the broker's signer, the delivery channels). The SOAP endpoints get a :class:`ServiceContext` made from
it, and in embedded mode the in-process worker is handed the very same runtime, so the process holds one
database engine and one SQLite writer queue. ``hiem worker`` gives Celery a factory instead, so each
pool child builds its own after the fork.
"""

from __future__ import annotations

from collections.abc import Callable

from hiem.app.bootstrap import open_database
from hiem.audit.trail import AuditTrail
from hiem.config import Settings
from hiem.store.db import Database
from hiem.worker.runtime import Runtime
from hiem.wsn.context import Dispatcher, ServiceContext


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """The process's resources. ``migrate``: bring the schema up to date first (the web process does)."""
    database = open_database(settings) if migrate else Database(settings.database_url, settings.db_pool,
                                                                           settings.sqlite_synchronous)
    return Runtime(settings=settings, db=database, audit=AuditTrail(settings))


def runtime_factory(settings: Settings) -> Callable[[], Runtime]:
    """For ``hiem worker``: each process (and prefork child) builds its own runtime on first use."""
    return lambda: build_runtime(settings, migrate=False)


def service_context(rt: Runtime, dispatcher: Dispatcher) -> ServiceContext:
    """What the WS-N handlers see, made of the runtime's own resources (no second Database)."""
    return ServiceContext(settings=rt.settings, db=rt.db, dispatcher=dispatcher, audit=rt.audit, signer=rt.signer)

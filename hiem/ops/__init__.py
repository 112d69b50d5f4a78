"""The operators' console (``/ops``) and its building blocks; ``hiem serve`` mounts :func:`build_ops_app`.

Layout: :mod:`.app` routes and guards requests, :mod:`.pages` and :mod:`.queries` read, :mod:`.actions`
writes (redeliver, unpark) with a record in ``operator_actions``, :mod:`.sessions` and :mod:`.operators` do
authentication, :mod:`.stats` and :mod:`.queue` compute the overview that ``hiem status`` and
``/metrics`` (:mod:`hiem.ops.metrics`) share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hiem.config import Settings
from hiem.store.db import Database

if TYPE_CHECKING:
    from hiem.ops.app import OpsApp


def build_ops_app(settings: Settings, database: Database) -> OpsApp:
    """The console + /metrics WSGI app for ``hiem serve`` (settings from the ``HIEM_OPS_*`` variables)."""
    from hiem.ops.app import OpsApp
    from hiem.ops.settings import load_ops_settings

    return OpsApp(settings, database, load_ops_settings(settings))

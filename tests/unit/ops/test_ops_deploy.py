"""deploy/: the Grafana dashboard only queries metrics that /metrics really exposes, from the provisioned
data source, and its panels do not overlap (compose wiring itself is tested in tests/unit/test_compose.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hiem.config import Settings
from hiem.ops.metrics import MetricsApp
from hiem.ops.queue import QueueStatus
from hiem.store.db import Database
from tests.unit.ops.conftest import FixedQueue, Seeded

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/hiem.json").read_text())


def exposed_names(settings: Settings, db: Database) -> set[str]:
    queue = FixedQueue(settings, QueueStatus("distributed", "hiem", 0, ["celery@a"]))  # every family present
    app = MetricsApp(db, queue)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://m.test") as client:
        text = client.get("/metrics").text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_dashboard_queries_only_exposed_metrics(settings: Settings, db: Database, seeded: Seeded) -> None:
    exposed = exposed_names(settings, db)
    queried = {name for panel in DASHBOARD["panels"] for target in panel["targets"]
               for name in re.findall(r"\bhiem_[a-z_]+", target["expr"])}
    assert queried, "the dashboard queries hiem metrics"
    assert queried <= exposed, f"not exposed by /metrics: {sorted(queried - exposed)}"


def test_dashboard_shape() -> None:
    panels = DASHBOARD["panels"]
    assert DASHBOARD["uid"] == "hiem-overview" and DASHBOARD["timezone"] == "utc"
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "hiem-prometheus"}, panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine

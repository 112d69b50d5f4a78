"""The operator commands against a real broker's database: topics, subscriptions, deliveries, audit."""

from __future__ import annotations

import subprocess
import sys

from lxml import etree

from hiem.audit import validate_audit_message
from tests.support import wsn
from tests.support.processes import ROOT


def _run(broker, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "hiem.cli", *args], env=broker.env, cwd=ROOT, text=True,
                          capture_output=True, timeout=60, check=check)


def test_operator_commands(module_broker, consumer, tmp_path):
    subscription = wsn.subscription_id(wsn.call(module_broker.url, "Subscribe", wsn.subscribe_body(consumer.url)))
    wsn.call(module_broker.url, "Notify", wsn.notify_body())
    consumer.wait_for(1)

    extra = tmp_path / "extra.xml"
    extra.write_text('<wstop:TopicNamespace xmlns:wstop="http://docs.oasis-open.org/wsn/t-1" '
                     'targetNamespace="urn:example:extra" name="Extra"><wstop:Topic name="Alerts">'
                     '<wstop:Topic name="Measles"/></wstop:Topic></wstop:TopicNamespace>')
    first = _run(module_broker, "topics", "load", str(extra))
    assert "urn:example:extra: 2 topics added, 0 already loaded" in first.stdout
    again = _run(module_broker, "topics", "load", str(extra))
    assert "0 topics added, 2 already loaded" in again.stdout, "loading is idempotent"
    listing = _run(module_broker, "topics", "list").stdout
    assert "InfluenzaLikeIllness    (GIPSE/Biosurveillance/InfluenzaLikeIllness)" in listing
    assert "Measles    (Alerts/Measles)" in listing

    subscriptions = _run(module_broker, "subscriptions", "list", "--status", "active").stdout
    assert subscription in subscriptions and consumer.url in subscriptions and "Concrete" in subscriptions

    deliveries = _run(module_broker, "deliveries", "list", "--state", "delivered").stdout
    assert subscription in deliveries

    records = _run(module_broker, "audit", "list", "--event", "export", "--since", "1h").stdout
    record_id = next(line.split()[0] for line in records.splitlines()[1:] if subscription in line)
    shown = _run(module_broker, "audit", "show", record_id).stdout
    validate_audit_message(shown.encode())
    assert etree.fromstring(shown.encode()).find("EventIdentification/EventID").get("csd-code") == "110106"

    missing = _run(module_broker, "topics", "load", str(tmp_path / "nope.xml"), check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr

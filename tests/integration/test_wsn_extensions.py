"""The WS-N features beyond HIEM's minimum, over real HTTP: leases and Renew, Pause/Resume, sequence
numbers and replay, GetCurrentMessage, GetResourceProperty, XPath MessageContent filters."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree
from sqlalchemy import select

from hiem import contract, ns
from hiem.store.db import Database
from hiem.store.models import AuditRecord, Subscription
from tests.conftest import Broker, broker_in_mode, start_broker
from tests.integration.ops_harness import logged_in_client
from tests.support import wsn
from tests.support.barrier import (
    marker_element,
    marker_of,
    marker_subscription,
    publish_marker,
    unmarked,
    wait_for_marker,
)
from tests.support.consumer import RecordingConsumer

WSNT = ns.WSNT
PSM = "http://docs.oasis-open.org/wsn/bw-2/PausableSubscriptionManager/"


@pytest.fixture(scope="module")
def ordered_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """An embedded broker with per-subscription ordered delivery: a barrier's marker on the same subscription
    cannot be sent while a delivery of an earlier notification is pending or in flight."""
    running = start_broker("embedded", tmp_path_factory.mktemp("ordered"), HIEM_ORDERED_DELIVERY="1")
    try:
        yield running
    finally:
        running.stop()


def _manager_call(url: str, body: str, action: str, subscription: str) -> object:
    data = wsn.envelope(body, action=action, headers=wsn.subscription_header(subscription))
    return wsn.post(url, "/wsn/SubscriptionManager", data, action=action)


def _sequences(consumer: RecordingConsumer) -> list[int]:
    return [int(r.envelope().findtext(f".//{{{ns.HIEM}}}Sequence")) for r in consumer.received]


def _audit_kinds(database_url: str) -> list[str]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        kinds = [row[0] for row in connection.execute(sa.text("SELECT kind FROM audit_records ORDER BY id"))]
    engine.dispose()
    return kinds


def test_lease_expires_and_renew_extends(module_broker, consumer):
    url = module_broker.url
    short = wsn.call(url, "Subscribe", wsn.subscribe_body(
        consumer.url, extra="<wsnt:InitialTerminationTime>PT3S</wsnt:InitialTerminationTime>"))
    assert short.status_code == 200, short.text
    assert wsn.body_element(short).findtext(f"{{{WSNT}}}TerminationTime")
    expiring = wsn.subscription_id(short)
    with RecordingConsumer() as renewed_consumer:
        renewed = wsn.subscription_id(wsn.call(url, "Subscribe", wsn.subscribe_body(
            renewed_consumer.url, extra="<wsnt:InitialTerminationTime>PT3S</wsnt:InitialTerminationTime>")))
        response = _manager_call(url, "<wsnt:Renew><wsnt:TerminationTime>PT1H</wsnt:TerminationTime></wsnt:Renew>",
                                 "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewRequest", renewed)
        assert response.status_code == 200, response.text
        wsn.assert_valid(wsn.body_element(response))
        time.sleep(4.0)  # the first lease (3 s) runs out
        assert wsn.call(url, "Notify", wsn.notify_body()).status_code == 202
        renewed_consumer.wait_for(1)
        # barrier: a marker through a second, live subscription of the same consumer (another topic), published
        # after that Notify was accepted: a delivery to the expired subscription would have been queued first
        with marker_subscription(url, consumer.url):
            publish_marker(url, "after-expiry")
            wait_for_marker(consumer, "after-expiry")
        assert [marker_of(r) for r in consumer.received] == ["after-expiry"], \
            "the expired subscription receives nothing"
    again = _manager_call(url, "<wsnt:Renew><wsnt:TerminationTime>PT1H</wsnt:TerminationTime></wsnt:Renew>",
                          "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewRequest", expiring)
    assert etree.QName(wsn.fault_detail(again)).localname == "ResourceUnknownFault"
    kinds = _audit_kinds(module_broker.env["HIEM_DATABASE_URL"])
    assert "subscription-expired" in kinds and "subscription-renewed" in kinds


def test_lease_beyond_the_maximum_is_refused(tmp_path, consumer):
    running = start_broker("embedded", tmp_path, HIEM_MAX_LEASE="P1D")
    try:
        response = wsn.call(running.url, "Subscribe", wsn.subscribe_body(
            consumer.url, extra="<wsnt:InitialTerminationTime>P30D</wsnt:InitialTerminationTime>"))
        detail = wsn.fault_detail(response)
        assert etree.QName(detail).localname == "UnacceptableInitialTerminationTimeFault"
        wsn.assert_valid(detail)
        assert detail.find(f"{{{WSNT}}}MaximumTime") is not None
        granted = wsn.call(running.url, "Subscribe", wsn.subscribe_body(consumer.url))
        assert wsn.body_element(granted).findtext(f"{{{WSNT}}}TerminationTime"), "default = the maximum"
        renew = _manager_call(running.url, "<wsnt:Renew><wsnt:TerminationTime>P3D</wsnt:TerminationTime></wsnt:Renew>",
                              "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewRequest",
                              wsn.subscription_id(granted))
        assert etree.QName(wsn.fault_detail(renew)).localname == "UnacceptableTerminationTimeFault"
    finally:
        running.stop()


def test_pause_publish_20_resume_in_order(module_broker, consumer):
    url = module_broker.url
    subscription = wsn.subscription_id(wsn.call(url, "Subscribe", wsn.subscribe_body(
        consumer.url, topic="nhin:GIPSE/Biosurveillance/Rash")))
    paused = _manager_call(url, "<wsnt:PauseSubscription/>", PSM + "PauseSubscriptionRequest", subscription)
    assert paused.status_code == 200, paused.text
    wsn.assert_valid(wsn.body_element(paused))
    for index in range(20):
        payload = f"<g:Count xmlns:g='urn:g'>{index}</g:Count>"
        assert wsn.call(url, "Notify", wsn.notify_body(topic="nhin:GIPSE/Biosurveillance/Rash",
                                                       payload=payload)).status_code == 202
    # barrier: a marker through a second, active subscription of the same consumer (another topic), published
    # after the 20 were accepted: had the paused subscription been sent any, they were queued before it
    with marker_subscription(url, consumer.url):
        publish_marker(url, "while-paused")
        wait_for_marker(consumer, "while-paused")
    assert [marker_of(r) for r in consumer.received] == ["while-paused"], "nothing is delivered while paused"
    resumed = _manager_call(url, "<wsnt:ResumeSubscription/>", PSM + "ResumeSubscriptionRequest", subscription)
    assert resumed.status_code == 200, resumed.text
    received = unmarked(consumer.wait_for(21, timeout=30))
    counts = [int(r.envelope().findtext(".//{urn:g}Count")) for r in received]
    assert counts == list(range(20))
    sequences = [int(r.envelope().findtext(f".//{{{ns.HIEM}}}Sequence")) for r in received]
    assert sequences == list(range(sequences[0], sequences[0] + 20))


def test_a_resume_whose_drain_was_lost_is_drained_by_the_sweeper(tmp_path, consumer):
    """Fault injection: the resume's transaction commits, but its in-order drain never runs (the task
    failed, or the broker crashed before enqueueing it). The sweeper finds the active subscription whose
    held deliveries stood still for a whole lease, and sends them, in order, once each."""
    # ordered delivery: the barrier's marker (same subscription) waits while any of the five is pending or in flight
    running = start_broker("embedded", tmp_path, HIEM_VISIBILITY_TIMEOUT="3", HIEM_SWEEP_INTERVAL="1",
                           HIEM_ORDERED_DELIVERY="1")
    try:
        topic = "nhin:GIPSE/Biosurveillance/Rash"
        subscription = wsn.subscription_id(wsn.call(running.url, "Subscribe",
                                                    wsn.subscribe_body(consumer.url, topic=topic)))
        paused = _manager_call(running.url, "<wsnt:PauseSubscription/>", PSM + "PauseSubscriptionRequest",
                               subscription)
        assert paused.status_code == 200, paused.text
        for index in range(5):
            assert wsn.call(running.url, "Notify", wsn.notify_body(
                topic=topic, payload=f"<g:Count xmlns:g='urn:g'>{index}</g:Count>")).status_code == 202
        engine = sa.create_engine(running.env["HIEM_DATABASE_URL"])
        try:
            held = "SELECT count(*) FROM deliveries WHERE subscription_id = :s AND state = 'held'"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    if connection.execute(sa.text(held), {"s": subscription}).scalar() == 5:
                        break
                time.sleep(0.2)
            with engine.begin() as connection:  # what the resume commits, without its drain
                connection.execute(sa.text("UPDATE subscriptions SET status = 'active' WHERE id = :s"),
                                   {"s": subscription})
        finally:
            engine.dispose()
        received = consumer.wait_for(5, timeout=30)
        assert [int(r.envelope().findtext(".//{urn:g}Count")) for r in received] == list(range(5))
        # barrier: a marker on the same subscription; ordered delivery claims it only once none of the five is
        # held, pending or in flight, so a second send of one of them would have come before it
        publish_marker(running.url, "after-drain", topic=topic)
        wait_for_marker(consumer, "after-drain")
        assert [marker_of(r) for r in consumer.received] == [None] * 5 + ["after-drain"], \
            "each held delivery is sent once"
    finally:
        running.stop()


def test_replay_returns_what_was_missed(module_broker, consumer):
    url = module_broker.url
    subscription = wsn.subscription_id(wsn.call(url, "Subscribe", wsn.subscribe_body(
        consumer.url, topic="nhin:GIPSE/Biosurveillance/Fever")))
    for index in range(5):
        wsn.call(url, "Notify", wsn.notify_body(topic="nhin:GIPSE/Biosurveillance/Fever",
                                                payload=f"<g:Count xmlns:g='urn:g'>{index}</g:Count>"))
    consumer.wait_for(5)
    assert sorted(_sequences(consumer)) == [1, 2, 3, 4, 5]
    body = "<hiem:Replay xmlns:hiem='urn:hiem:broker:1'><hiem:After>2</hiem:After></hiem:Replay>"
    response = _manager_call(url, body, "urn:hiem:broker:1/SubscriptionManager/ReplayRequest", subscription)
    assert response.status_code == 200, response.text
    answer = wsn.body_element(response)
    wsn.assert_valid(answer)
    replayed = answer.findall(f"{{{ns.HIEM}}}Replayed")
    assert [int(r.get("sequence")) for r in replayed] == [3, 4, 5]
    assert [int(r.findtext(".//{urn:g}Count")) for r in replayed] == [2, 3, 4]


def test_get_current_message(module_broker):
    url = module_broker.url
    topic = "nhin:DeidentifiedPopulationHealthData/Biosurveillance/Pneumonia"
    body = f"<wsnt:GetCurrentMessage><wsnt:Topic Dialect='{wsn.CONCRETE}'>{topic}</wsnt:Topic></wsnt:GetCurrentMessage>"
    action = "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/GetCurrentMessageRequest"
    none = wsn.post(url, "/wsn/NotificationProducer", wsn.envelope(body, action=action), action=action)
    assert etree.QName(wsn.fault_detail(none)).localname == "NoCurrentMessageOnTopicFault"
    for count in (1, 2):
        wsn.call(url, "Notify", wsn.notify_body(topic=topic, payload=f"<g:Count xmlns:g='urn:g'>{count}</g:Count>"))
    current = wsn.post(url, "/wsn/NotificationProducer", wsn.envelope(body, action=action), action=action)
    answer = wsn.body_element(current)
    wsn.assert_valid(answer)
    assert answer.findtext("{urn:g}Count") == "2"


def test_topic_discovery_with_get_resource_property(module_broker):
    action = "http://docs.oasis-open.org/wsrf/rpw-2/GetResourceProperty/GetResourcePropertyRequest"
    rp = "http://docs.oasis-open.org/wsrf/rp-2"

    def ask(qname: str, nsdecl: str):  # type: ignore[no-untyped-def]
        body = f"<rp:GetResourceProperty xmlns:rp='{rp}' {nsdecl}>{qname}</rp:GetResourceProperty>"
        return wsn.post(module_broker.url, "/wsn/NotificationProducer", wsn.envelope(body, action=action),
                        action=action)

    topics = wsn.body_element(ask("wstop:TopicSet", f"xmlns:wstop='{ns.WSTOP}'"))
    wsn.assert_valid(topics)
    topic_set = topics.find(f"{{{ns.WSTOP}}}TopicSet")
    t1 = contract.schema("t-1.xsd")
    assert t1.validate(etree.ElementTree(topic_set)), t1.error_log
    n = f"{{{ns.NHIN}}}"
    assert topic_set.find(f"{n}GIPSE/{n}Biosurveillance/{n}InfluenzaLikeIllness") is not None
    assert topic_set.find(f"{n}DeidentifiedPopulationHealthData/{n}Biosurveillance/{n}Influenza") is not None
    dialects = wsn.body_element(ask("wsnt:TopicExpressionDialect", ""))
    assert {d.text for d in dialects} == {wsn.SIMPLE, wsn.CONCRETE, wsn.FULL}
    fixed = wsn.body_element(ask("wsnt:FixedTopicSet", ""))
    assert fixed[0].text == "true"
    unknown = ask("wsnt:NoSuchProperty", "")
    assert etree.QName(wsn.fault_detail(unknown)).localname == "InvalidResourcePropertyQNameFault"


XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"


def _content_filter(expression: str, dialect: str = XPATH) -> str:
    return f"<wsnt:MessageContent Dialect='{dialect}' xmlns:g='urn:g'>{expression}</wsnt:MessageContent>"


def test_xpath_message_content_filters(ordered_broker):
    url = ordered_broker.url
    topic = "nhin:GIPSE/Biosurveillance/Neurological"
    with RecordingConsumer() as high, RecordingConsumer() as low:
        for consumer, expression in ((high, "/g:Report/g:Count &gt; 100"), (low, "g:Count &lt;= 100")):
            response = wsn.call(url, "Subscribe", wsn.subscribe_body(consumer.url, topic=topic,
                                                                     extra_filter=_content_filter(expression)))
            assert response.status_code == 200, response.text
        for count in (5, 500):
            payload = f"<g:Report xmlns:g='urn:g'><g:Count>{count}</g:Count></g:Report>"
            wsn.call(url, "Notify", wsn.notify_body(topic=topic, payload=payload))
        high.wait_for(1)
        low.wait_for(1)
        # barrier: per consumer, a marker its own filter matches (same subscription, ordered delivery): it is
        # not sent while a delivery of the earlier notifications to that subscription is pending or in flight
        for count in (1000, 0):  # high's filter matches 1000, low's 0
            payload = f"<g:Report xmlns:g='urn:g'><g:Count>{count}</g:Count>{marker_element(str(count))}</g:Report>"
            publish_marker(url, str(count), topic=topic, payload=payload)
        wait_for_marker(high, "1000")
        wait_for_marker(low, "0")
        assert [r.envelope().findtext(".//{urn:g}Count") for r in high.received] == ["500", "1000"]
        assert [r.envelope().findtext(".//{urn:g}Count") for r in low.received] == ["5", "0"]


@pytest.mark.parametrize(("expression", "dialect"), [("g:Count &gt;", XPATH), ("count(", XPATH),
                                                     ("g:Count", "urn:example:not-xpath"),
                                                     ("undeclared:Count", XPATH)])
def test_invalid_message_content_expressions(module_broker, expression, dialect):
    response = wsn.call(module_broker.url, "Subscribe", wsn.subscribe_body(
        "http://127.0.0.1:9/c", extra_filter=_content_filter(expression, dialect)))
    detail = wsn.fault_detail(response)
    assert etree.QName(detail).localname == "InvalidMessageContentExpressionFault"
    wsn.assert_valid(detail)


def test_pathological_xpath_is_stopped_by_the_time_limit(ordered_broker):
    url = ordered_broker.url
    topic = "nhin:GIPSE/Biosurveillance/Hemorrhagic"
    slow = "count(//*[count(//*[count(//*) &gt; 0]) &gt; 0]) &gt; 0"
    with RecordingConsumer() as trapped, RecordingConsumer() as plain:
        trapped_id = wsn.subscription_id(wsn.call(url, "Subscribe", wsn.subscribe_body(
            trapped.url, topic=topic, extra_filter=_content_filter(slow))))
        wsn.call(url, "Subscribe", wsn.subscribe_body(plain.url, topic=topic))
        failures_before = _filter_failures(url)
        payload = "<g:Big xmlns:g='urn:g'>" + "<a><b/><b/><b/></a>" * 3000 + "</g:Big>"
        started = time.monotonic()
        assert wsn.call(url, "Notify", wsn.notify_body(topic=topic, payload=payload)).status_code == 202
        plain.wait_for(1, timeout=30)
        elapsed = time.monotonic() - started
        # barrier: a small marker the same filter matches at once (same subscription, ordered delivery): it is
        # not sent while a delivery of the big notification to the trapped subscription is pending or in flight
        publish_marker(url, "small", topic=topic)
        wait_for_marker(trapped, "small")
        assert [marker_of(r) for r in trapped.received] == ["small"], "a filter that ran out of time does not match"
        assert elapsed < 15, f"fan-out took {elapsed:.1f}s"
    # ... and it is not silent: a metric, an audit record, the subscription's row and its /ops page
    assert _filter_failures(url) == failures_before + 1
    db = Database(ordered_broker.env["HIEM_DATABASE_URL"])
    try:
        with db.session() as session:
            sub = session.get(Subscription, trapped_id)
            assert sub is not None and sub.filter_failures == 1 and "exceeded" in (sub.filter_error or ""), sub
            audited = [r for r in session.scalars(select(AuditRecord).where(AuditRecord.subscription_id == trapped_id))
                       if r.kind == "notify-sent"]
            assert [r.outcome for r in audited] == [8, 0], "the failure audited as a Notify not sent, then the marker"
            assert "MessageContent filter not evaluated" in json.dumps(audited[0].event)
    finally:
        db.dispose()
    password = re.search(r"user: dev\s+password: (\S+)", ordered_broker.web.output())
    assert password, ordered_broker.web.output()[-2000:]
    with logged_in_client(SimpleNamespace(url=url, password=password.group(1))) as client:  # type: ignore[arg-type]
        page = client.get(f"/ops/subscriptions/{trapped_id}")
        assert page.status_code == 200
        shown = re.search(r'id="filter-failures">(.*?)</dd>', page.text, re.S)
        assert shown and "1</strong> notification not sent" in shown.group(1) and "exceeded" in shown.group(1)


def _filter_failures(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(r"^hiem_filter_failures_total (\S+)$", metrics, re.M)
    assert found, metrics
    return float(found.group(1))


def test_sequence_numbers_survive_restarts(tmp_path, consumer):
    """Kill the broker between two publishes: sequence numbers stay gap-free across the restart."""
    db = f"sqlite:///{tmp_path / 'hiem.db'}"
    first = start_broker("embedded", tmp_path / "one", database_url=db)
    try:
        subscription = wsn.subscription_id(wsn.call(first.url, "Subscribe", wsn.subscribe_body(consumer.url)))
        wsn.call(first.url, "Notify", wsn.notify_body())
        consumer.wait_for(1)
    finally:
        first.web.kill()
    second = start_broker("embedded", tmp_path / "two", database_url=db)
    try:
        wsn.call(second.url, "Notify", wsn.notify_body())
        consumer.wait_for(2)
        assert sorted(_sequences(consumer)) == [1, 2]
        assert all(r.envelope().find(f".//{{{ns.HIEM}}}Sequence").get("subscription") == subscription
                   for r in consumer.received)
    finally:
        second.stop()



def test_xpath_filters_in_distributed_mode(tmp_path):
    """The sandboxes start inside Celery's pool children (daemonic processes) too, and match there."""
    topic = "nhin:GIPSE/Biosurveillance/Neurological"
    with broker_in_mode("distributed", tmp_path) as broker:
        with RecordingConsumer() as high, RecordingConsumer() as low:
            ids = {}
            for name, consumer, expression in (("high", high, "/g:Report/g:Count &gt; 100"),
                                               ("low", low, "g:Count &lt;= 100")):
                ids[name] = wsn.subscription_id(wsn.call(broker.url, "Subscribe", wsn.subscribe_body(
                    consumer.url, topic=topic, extra_filter=_content_filter(expression))))
            for count in (5, 500):
                payload = f"<g:Report xmlns:g='urn:g'><g:Count>{count}</g:Count></g:Report>"
                published = wsn.call(broker.url, "Notify", wsn.notify_body(topic=topic, payload=payload))
                assert published.status_code == 202, published.text
            assert [r.envelope().findtext(".//{urn:g}Count") for r in high.wait_for(1, timeout=30)] == ["500"]
            assert [r.envelope().findtext(".//{urn:g}Count") for r in low.wait_for(1, timeout=30)] == ["5"]
        engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"])
        try:
            with engine.connect() as connection:  # both fan-outs are done: each subscription got one row
                pending = "SELECT count(*) FROM notifications WHERE fanout_state <> 'done'"
                assert connection.execute(sa.text(pending)).scalar() == 0
                rows = dict(connection.execute(sa.text(
                    "SELECT subscription_id, count(*) FROM deliveries GROUP BY subscription_id")).all())
                failures = connection.execute(sa.text("SELECT sum(filter_failures) FROM subscriptions")).scalar()
        finally:
            engine.dispose()
    assert rows == {ids["high"]: 1, ids["low"]: 1} and failures == 0

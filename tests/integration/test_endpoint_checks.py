"""Endpoint checks before a subscription becomes active, and heartbeats a subscriber asked for."""

from __future__ import annotations

from lxml import etree

from hiem import ns
from tests.conftest import start_broker
from tests.support import wsn
from tests.support.consumer import RecordingConsumer


def _topics(consumer: RecordingConsumer) -> list[str]:
    return [r.envelope().findtext(f".//{{{ns.WSNT}}}Topic") for r in consumer.received]


def test_endpoint_check_and_heartbeats(tmp_path):
    running = start_broker("embedded", tmp_path, HIEM_ENDPOINT_CHECK="1", HIEM_MIN_HEARTBEAT="1")
    try:
        with RecordingConsumer(lambda body: (500, {}, b"")) as broken:
            refused = wsn.call(running.url, "Subscribe", wsn.subscribe_body(broken.url))
            detail = wsn.fault_detail(refused)
            assert etree.QName(detail).localname == "SubscribeCreationFailedFault"
            assert "endpoint check failed" in detail.findtext(f"{{{ns.WSRF_BF}}}Description")
            assert len(broken.received) == 1, "one test Notify, no retries"
        with RecordingConsumer() as healthy:
            extra = f"<hiem:Heartbeat xmlns:hiem='{ns.HIEM}' interval='PT1S'/>"
            response = wsn.call(running.url, "Subscribe", wsn.subscribe_body(healthy.url, extra=extra))
            assert response.status_code == 200, response.text
            first = healthy.received[0].envelope()
            assert first.findtext(f".//{{{ns.WSNT}}}Topic") == "hiem:EndpointCheck"
            wsn.assert_valid(first.find(f"{{{ns.SOAP12}}}Body")[0])
            healthy.wait_for(3, timeout=20)
            assert _topics(healthy)[1:3] == ["hiem:Heartbeat", "hiem:Heartbeat"]
    finally:
        running.stop()


def test_heartbeat_interval_below_the_minimum_is_refused(module_broker, consumer):
    extra = f"<hiem:Heartbeat xmlns:hiem='{ns.HIEM}' interval='PT0.1S'/>"
    refused = wsn.call(module_broker.url, "Subscribe", wsn.subscribe_body(consumer.url, extra=extra))
    assert etree.QName(wsn.fault_detail(refused)).localname == "SubscribeCreationFailedFault"

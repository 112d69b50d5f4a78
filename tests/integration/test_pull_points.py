"""Pull delivery over real HTTP: CreatePullPoint, a subscription whose ConsumerReference is the pull point,
GetMessages in order then none, DestroyPullPoint, and the retention bound dropping the oldest (audited)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from lxml import etree

from hiem import ns
from tests.conftest import start_broker
from tests.support import wsn

BW = "http://docs.oasis-open.org/wsn/bw-2/"


def _create(url: str) -> etree._Element:
    action = BW + "CreatePullPoint/CreatePullPointRequest"
    response = wsn.post(url, "/wsn/PullPoint", wsn.envelope("<wsnt:CreatePullPoint/>", action=action), action=action)
    assert response.status_code == 200, response.text
    answer = wsn.body_element(response)
    wsn.assert_valid(answer)
    return answer.find(f"{{{ns.WSNT}}}PullPoint")


def _pull_point_header(epr: etree._Element) -> str:
    parameter = epr.find(f"{{{ns.WSA}}}ReferenceParameters")[0]
    return f"<hiem:PullPointId xmlns:hiem='{ns.HIEM}'>{parameter.text}</hiem:PullPointId>"


def _get(url: str, epr: etree._Element, maximum: int | None = None):  # type: ignore[no-untyped-def]
    action = BW + "PullPoint/GetMessagesRequest"
    limit = f"<wsnt:MaximumNumber>{maximum}</wsnt:MaximumNumber>" if maximum is not None else ""
    data = wsn.envelope(f"<wsnt:GetMessages>{limit}</wsnt:GetMessages>", action=action,
                        headers=_pull_point_header(epr))
    return wsn.post(url, "/wsn/PullPoint", data, action=action)


def _counts(response) -> list[str]:  # type: ignore[no-untyped-def]
    answer = wsn.body_element(response)
    assert etree.QName(answer).localname == "GetMessagesResponse", response.text
    wsn.assert_valid(answer)
    return [m.findtext(".//{urn:g}Count") for m in answer.findall(f"{{{ns.WSNT}}}NotificationMessage")]


def _subscribe(url: str, epr: etree._Element, topic: str) -> None:
    params = etree.tostring(epr.find(f"{{{ns.WSA}}}ReferenceParameters")[0]).decode()
    address = epr.findtext(f"{{{ns.WSA}}}Address")
    response = wsn.call(url, "Subscribe", wsn.subscribe_body(address, topic=topic, refparams=params))
    assert response.status_code == 200, response.text


def _publish(url: str, topic: str, count: int) -> None:
    assert wsn.call(url, "Notify", wsn.notify_body(
        topic=topic, payload=f"<g:Count xmlns:g='urn:g'>{count}</g:Count>")).status_code == 202


def _scalar(database_url: str, sql: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def _wait_stored(database_url: str, expected: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _scalar(database_url, "SELECT count(*) FROM deliveries WHERE state = 'stored'") == expected:
            return
        time.sleep(0.3)
    raise AssertionError(f"{expected} messages never stored")


def test_pull_point_keeps_messages_in_order(module_broker):
    url = module_broker.url
    topic = "nhin:GIPSE/Biosurveillance/LocalizedLesion"
    epr = _create(url)
    _subscribe(url, epr, topic)
    for count in range(3):
        _publish(url, topic, count)
    _wait_stored(module_broker.env["HIEM_DATABASE_URL"], 3)
    assert _counts(_get(url, epr, 0)) == [], "MaximumNumber 0 takes nothing"
    assert _counts(_get(url, epr, 2)) == ["0", "1"]
    assert _counts(_get(url, epr)) == ["2"]
    assert _counts(_get(url, epr)) == []

    action = BW + "PullPoint/DestroyPullPointRequest"
    destroy = wsn.envelope("<wsnt:DestroyPullPoint/>", action=action, headers=_pull_point_header(epr))
    assert wsn.post(url, "/wsn/PullPoint", destroy, action=action).status_code == 200
    gone = _get(url, epr)
    assert etree.QName(wsn.fault_detail(gone)).localname == "ResourceUnknownFault"


def test_retention_bound_drops_the_oldest_with_an_audit_record(tmp_path):
    running = start_broker("embedded", tmp_path, HIEM_PULL_MAX_MESSAGES="2")
    try:
        url, database = running.url, running.env["HIEM_DATABASE_URL"]
        topic = "nhin:GIPSE/Biosurveillance/Botulinic"
        epr = _create(url)
        _subscribe(url, epr, topic)
        for count in range(4):
            _publish(url, topic, count)
        # all four fanned out and the bound enforced (a moment with 2 stored can also come before that)
        deadline = time.monotonic() + 20
        while _scalar(database, "SELECT count(*) FROM deliveries WHERE state = 'dropped'") < 2:
            assert time.monotonic() < deadline, "the retention bound never dropped the two oldest"
            time.sleep(0.2)
        _wait_stored(database, 2)
        assert _counts(_get(url, epr)) == ["2", "3"], "the two oldest were dropped"
        assert _scalar(database, "SELECT count(*) FROM deliveries WHERE state = 'dropped'") == 2
        assert _scalar(database, "SELECT count(*) FROM audit_records WHERE kind = 'notify-sent' AND outcome = 8") == 2
    finally:
        running.stop()

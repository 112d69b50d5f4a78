"""hiem.contract: the served WSDL/XSD set compiles offline, validates WS-N messages, and serves safely."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from pathlib import Path

import pytest
from lxml import etree

from hiem import contract, ns, xmlsafe
from hiem.contract import WSDL_DIR, schema, served_document, service_wsdl, validate_wsn
from hiem.wsn import messages, pullpoint

XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
BW = "http://docs.oasis-open.org/wsn/bw-2"
BRW = "http://docs.oasis-open.org/wsn/brw-2"

ALL_XSD = sorted(path.name for path in WSDL_DIR.glob("*.xsd"))
ALL_WSDL = sorted(path.name for path in WSDL_DIR.glob("*.wsdl"))
BASE = "https://hiem.example.org:8443"

# The NHIN HIEM v2.0 spec's sample Subscribe (Appendix A), its typos corrected.
HIEM_SUBSCRIBE = (
    b'<wsnt:Subscribe xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
    b'xmlns:wsa="http://www.w3.org/2005/08/addressing" '
    b'xmlns:nhin="http://www.hhs.gov/healthit/nhin">'
    b"<wsnt:ConsumerReference><wsa:Address>https://example.org:6151/Subscribe</wsa:Address>"
    b"<wsa:ReferenceParameters><nhin:UserAddress>lee.morgan@carespark.com</nhin:UserAddress>"
    b"</wsa:ReferenceParameters></wsnt:ConsumerReference>"
    b'<wsnt:Filter><wsnt:TopicExpression Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete">'
    b"nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness</wsnt:TopicExpression></wsnt:Filter>"
    b"</wsnt:Subscribe>"
)

# check.py's negative control: a ConsumerReference without the required wsa:Address.
BAD_SUBSCRIBE = (
    b'<wsnt:Subscribe xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
    b'xmlns:wsa="http://www.w3.org/2005/08/addressing">'
    b"<wsnt:ConsumerReference/></wsnt:Subscribe>"
)

# The spec's sample Notify (Appendix A) with its typos fixed: namespaces declared, tags closed.
HIEM_NOTIFY = b"""<wsnt:Notify xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"
    xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:nhin="http://www.hhs.gov/healthit/nhin">
  <wsnt:NotificationMessage>
    <wsnt:SubscriptionReference>
      <a:Address>http://www.nchica.org/SubscriptionManager</a:Address>
      <a:ReferenceParameters>
        <nhin:SubscriptionId>382dcdc7-8e84-9fdc-8443-48fd83bca938</nhin:SubscriptionId>
      </a:ReferenceParameters>
    </wsnt:SubscriptionReference>
    <wsnt:Topic Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
      >nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness</wsnt:Topic>
    <wsnt:Message><payload xmlns="urn:example:gipse"/></wsnt:Message>
  </wsnt:NotificationMessage>
</wsnt:Notify>"""

VALID_MESSAGES = {
    "subscribe": HIEM_SUBSCRIBE,
    "notify": HIEM_NOTIFY,
    "unsubscribe": b'<wsnt:Unsubscribe xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"/>',
    "unsubscribe-response": b'<wsnt:UnsubscribeResponse xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"/>',
    "renew": (
        b'<wsnt:Renew xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2">'
        b"<wsnt:TerminationTime>PT24H</wsnt:TerminationTime></wsnt:Renew>"
    ),
    "topic-not-supported-fault": (
        b'<wsnt:TopicNotSupportedFault xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
        b'xmlns:wsrf-bf="http://docs.oasis-open.org/wsrf/bf-2">'
        b"<wsrf-bf:Timestamp>2005-05-04T20:18:44.970Z</wsrf-bf:Timestamp>"
        b'<wsrf-bf:Description xml:lang="en">Topic not supported</wsrf-bf:Description>'
        b"</wsnt:TopicNotSupportedFault>"
    ),
    "resource-unknown-fault": (
        b'<wsrf-r:ResourceUnknownFault xmlns:wsrf-r="http://docs.oasis-open.org/wsrf/r-2" '
        b'xmlns:wsrf-bf="http://docs.oasis-open.org/wsrf/bf-2">'
        b"<wsrf-bf:Timestamp>2024-01-01T00:00:00Z</wsrf-bf:Timestamp></wsrf-r:ResourceUnknownFault>"
    ),
    "register-publisher": (
        b'<wsn-br:RegisterPublisher xmlns:wsn-br="http://docs.oasis-open.org/wsn/br-2" '
        b'xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2">'
        b"<wsn-br:PublisherReference><wsa:Address>https://publisher.example.org/</wsa:Address>"
        b"</wsn-br:PublisherReference>"
        b'<wsn-br:Topic Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Simple">tns:a</wsn-br:Topic>'
        b"<wsn-br:Demand>false</wsn-br:Demand></wsn-br:RegisterPublisher>"
    ),
    "get-resource-property": (
        b'<wsrf-rp:GetResourceProperty xmlns:wsrf-rp="http://docs.oasis-open.org/wsrf/rp-2" '
        b'xmlns:wstop="http://docs.oasis-open.org/wsn/t-1">wstop:TopicSet</wsrf-rp:GetResourceProperty>'
    ),
    "topic-set": (
        b'<wstop:TopicSet xmlns:wstop="http://docs.oasis-open.org/wsn/t-1" xmlns:nhin="http://www.hhs.gov/healthit/nhin">'
        b'<nhin:GIPSE wstop:topic="true"/></wstop:TopicSet>'
    ),
    "endpoint-reference": (
        b'<wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        b"<wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:EndpointReference>"
    ),
    "subscription-id": (
        b'<nhin:SubscriptionId xmlns:nhin="http://www.hhs.gov/healthit/nhin" '
        b'xmlns:wsa="http://www.w3.org/2005/08/addressing" wsa:IsReferenceParameter="true">'
        b"382dcdc7</nhin:SubscriptionId>"
    ),
}

INVALID_MESSAGES = {
    "consumer-reference-without-address": (BAD_SUBSCRIBE, "Address"),
    "termination-time-not-a-time": (
        b'<wsnt:Subscribe xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
        b'xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        b"<wsnt:ConsumerReference><wsa:Address>http://c.example/</wsa:Address></wsnt:ConsumerReference>"
        b"<wsnt:InitialTerminationTime>tomorrow</wsnt:InitialTerminationTime></wsnt:Subscribe>",
        "InitialTerminationTime",
    ),
    "topic-expression-without-dialect": (
        HIEM_SUBSCRIBE.replace(
            b' Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"', b""
        ),
        "Dialect",
    ),
    "notify-without-message": (
        b'<wsnt:Notify xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"/>',
        "Missing child",
    ),
    "fault-without-timestamp": (
        b'<wsnt:TopicNotSupportedFault xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"/>',
        "Timestamp",
    ),
    "undeclared-wsn-element": (
        b'<wsnt:Subscribes xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"/>',
        "No matching global declaration",
    ),
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a connection while the test runs."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _in_fresh_thread(name: str) -> etree.XMLSchema:
    """Compile ``name`` on a new thread, so the per-thread cache cannot hand back an old copy."""
    result: list[etree.XMLSchema] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(schema(name))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


# --- the folder --------------------------------------------------------------------------------------


def test_the_contract_files_travel_inside_the_package() -> None:
    assert WSDL_DIR.is_relative_to(Path(contract.__file__).resolve().parent)
    expected = {
        "b-2.xsd", "t-1.xsd", "br-2.xsd", "bf-2.xsd", "r-2.xsd", "rp-2.xsd", "ws-addr.xsd", "xml.xsd",
        "nhin-hiem.xsd", "rw-2.wsdl", "bw-2.wsdl", "brw-2.wsdl",
        "NotificationProducer.wsdl", "SubscriptionManager.wsdl", "NotificationBroker.wsdl", "PullPoint.wsdl",
    }  # fmt: skip
    assert expected <= set(ALL_XSD) | set(ALL_WSDL)


@pytest.mark.parametrize("name", ALL_XSD + ALL_WSDL)
def test_every_document_parses_and_imports_only_existing_siblings(name: str) -> None:
    root = xmlsafe.parse((WSDL_DIR / name).read_bytes())
    imports = list(root.iter(f"{{{XSD}}}import", f"{{{XSD}}}include", f"{{{WSDL}}}import"))
    for element in imports:
        location = element.get("schemaLocation") or element.get("location")
        assert location, f"{name}: import of {element.get('namespace')} has no location"
        assert "/" not in location and ":" not in location, f"{name}: non-sibling location {location}"
        assert (WSDL_DIR / location).is_file(), f"{name}: {location} is missing"


def _sources_table(heading: str) -> list[list[str]]:
    text = (WSDL_DIR / "SOURCES.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split(" | ")] for row in rows]


def test_copies_differ_from_the_originals_only_in_the_documented_attributes() -> None:
    originals = {row[0]: row[3] for row in _sources_table("Copies")}
    changes = _sources_table("Changed attributes")
    assert originals, "SOURCES.md lists no copies"
    changed_files = set()
    for file_name, original_sha256 in originals.items():
        lines = (WSDL_DIR / file_name).read_bytes().split(b"\n")
        for row_file, line_no, _element, attribute, old, new in changes:
            if row_file != file_name:
                continue
            changed_files.add(file_name)
            index = int(line_no) - 1
            quoted_new = f'"{new}"'.encode()
            assert lines[index].count(quoted_new) == 1, (
                f"{file_name}:{line_no} does not hold {attribute}={new}"
            )
            lines[index] = lines[index].replace(quoted_new, f'"{old}"'.encode())
        restored = b"\n".join(lines)
        assert hashlib.sha256(restored).hexdigest() == original_sha256, (
            f"{file_name} has undocumented changes"
        )
    assert changed_files == {row[0] for row in changes}


# --- schemas -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_XSD)
@pytest.mark.usefixtures("no_network")
def test_every_schema_compiles_offline(name: str) -> None:
    compiled = _in_fresh_thread(name)
    assert isinstance(compiled, etree.XMLSchema)


@pytest.mark.usefixtures("no_network")
def test_the_named_schemas_are_supported_and_b2_is_the_default() -> None:
    for name in ("b-2.xsd", "br-2.xsd", "t-1.xsd", "bf-2.xsd", "ws-addr.xsd", "rp-2.xsd"):
        assert isinstance(schema(name), etree.XMLSchema)
    assert schema() is schema("b-2.xsd")


def test_schemas_are_cached_per_thread() -> None:
    assert schema("t-1.xsd") is schema("t-1.xsd")
    assert _in_fresh_thread("t-1.xsd") is not schema("t-1.xsd")


@pytest.mark.parametrize(
    "name", ["bw-2.wsdl", "SOURCES.md", "../pyproject.toml", "missing.xsd", "/etc/passwd", "", "b-2"]
)
def test_schema_refuses_what_is_not_an_xsd_in_the_folder(name: str) -> None:
    with pytest.raises(ValueError, match="no schema"):
        schema(name)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "location",
    ["http://docs.oasis-open.org/wsn/b-2.xsd", "/etc/hosts", "../pyproject.toml", "file:///etc/hosts"],
)
def test_imports_outside_the_folder_fail_compilation_instead_of_being_skipped(location: str) -> None:
    # libxml2 on its own only warns about an import it cannot load and compiles without it.
    document = (
        f'<xsd:schema xmlns:xsd="{XSD}"><xsd:import namespace="urn:elsewhere" schemaLocation="{location}"/>'
        "</xsd:schema>"
    ).encode()
    tree = etree.fromstring(document, contract._schema_parser(), base_url=str(WSDL_DIR / "probe.xsd"))
    with pytest.raises(etree.XMLSchemaParseError):
        etree.XMLSchema(tree)


def test_hiem_sample_subscribe_is_valid_against_b2() -> None:
    b2 = schema("b-2.xsd")
    assert b2.validate(xmlsafe.parse(HIEM_SUBSCRIBE)), b2.error_log
    assert not b2.validate(xmlsafe.parse(BAD_SUBSCRIBE))


@pytest.mark.parametrize("label", sorted(VALID_MESSAGES))
def test_validate_wsn_accepts_valid_messages(label: str) -> None:
    assert validate_wsn(xmlsafe.parse(VALID_MESSAGES[label])) == []


@pytest.mark.parametrize("label", sorted(INVALID_MESSAGES))
def test_validate_wsn_reports_invalid_messages(label: str) -> None:
    document, expected = INVALID_MESSAGES[label]
    errors = validate_wsn(xmlsafe.parse(document))
    assert errors, f"{label} validated"
    assert all(isinstance(error, str) and error.startswith("line ") for error in errors)
    assert any(expected in error for error in errors), errors


def test_validate_wsn_validates_an_element_inside_an_envelope() -> None:
    envelope = xmlsafe.parse(
        f'<s:Envelope xmlns:s="{ns.SOAP12}"><s:Header/><s:Body>'.encode()
        + HIEM_SUBSCRIBE
        + b"</s:Body></s:Envelope>"
    )
    body_child = envelope.find(f"{{{ns.SOAP12}}}Body")[0]
    assert validate_wsn(body_child) == []
    bad = xmlsafe.parse(
        f'<s:Envelope xmlns:s="{ns.SOAP12}"><s:Body>'.encode() + BAD_SUBSCRIBE + b"</s:Body></s:Envelope>"
    )
    assert validate_wsn(bad[0][0])


def test_validate_wsn_validates_reference_parameter_header_blocks_as_they_were_in_the_epr() -> None:
    # The wstop prefix of the QName content is declared on the Header only; the copy validate_wsn makes
    # to drop wsa:IsReferenceParameter must keep it resolvable. The caller's element is left alone.
    envelope = xmlsafe.parse(
        f'<s:Envelope xmlns:s="{ns.SOAP12}" xmlns:wsa="{ns.WSA}"><s:Header xmlns:wstop="{ns.WSTOP}">'
        f'<wsrf-rp:GetResourceProperty xmlns:wsrf-rp="{ns.WSRF_RP}" wsa:IsReferenceParameter="true"'
        f">wstop:TopicSet</wsrf-rp:GetResourceProperty></s:Header><s:Body/></s:Envelope>".encode()
    )
    header_block = envelope[0][0]
    assert validate_wsn(header_block) == []
    assert header_block.get(f"{{{ns.WSA}}}IsReferenceParameter") == "true"
    header_block.text = "undeclared:TopicSet"
    assert validate_wsn(header_block)


def test_validate_wsn_reports_foreign_elements_instead_of_raising() -> None:
    errors = validate_wsn(xmlsafe.parse(b'<x:Subscribe xmlns:x="urn:not-wsn"/>'))
    assert errors == ["element {urn:not-wsn}Subscribe is not in a namespace hiem validates"]
    assert validate_wsn(xmlsafe.parse(b"<Subscribe/>"))
    assert validate_wsn(etree.Comment("hello"))


def test_validate_wsn_is_safe_across_threads() -> None:
    # Each thread's errors must be its own: with one shared XMLSchema they would mix.
    results: dict[str, list[list[str]]] = {"good": [], "bad": []}

    def run(kind: str) -> None:
        document = HIEM_SUBSCRIBE if kind == "good" else BAD_SUBSCRIBE
        for _ in range(200):
            results[kind].append(validate_wsn(xmlsafe.parse(document)))

    threads = [threading.Thread(target=run, args=(kind,)) for kind in ("good", "bad", "good", "bad")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(errors == [] for errors in results["good"])
    assert all(errors and "Address" in errors[0] for errors in results["bad"])


# --- serving -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ALL_XSD + ALL_WSDL if n not in contract.SERVICE_WSDLS.values()])
def test_served_copies_are_the_stored_bytes_with_relative_imports(name: str) -> None:
    assert served_document(name, BASE) == (WSDL_DIR / name).read_bytes()


def test_served_bw2_keeps_sibling_imports_relative() -> None:
    served = served_document("bw-2.wsdl", BASE)
    assert served is not None
    assert b'location="rw-2.wsdl"' in served
    assert b'schemaLocation="b-2.xsd"' in served
    assert b"http://docs.oasis-open.org/wsrf/rw-2.wsdl" not in served


@pytest.mark.parametrize("endpoint", sorted(contract.SERVICE_WSDLS))
def test_served_service_wsdl_gets_its_address_and_keeps_relative_imports(endpoint: str) -> None:
    served = served_document(contract.SERVICE_WSDLS[endpoint], BASE + "/")
    assert served is not None
    root = xmlsafe.parse(served)
    assert _addresses(root) == {f"{BASE}/wsn/{endpoint}"}
    assert all("/" not in location for location in _import_locations(root))


@pytest.mark.parametrize(
    "name",
    [
        "../pyproject.toml", "..", "../wsdl/b-2.xsd", "/etc/passwd", "wsdl/b-2.xsd", "b-2.xsd/", "./b-2.xsd",
        "..\\b-2.xsd", "%2e%2e%2fpyproject.toml", "b-2.xsd\x00", "b-2.xsd\n", ".b-2.xsd", "", "SOURCES.md",
        "missing.xsd", "B-2.XSD", "b-2.xsd?x", "x" * 300 + ".xsd", "~/b-2.xsd", "b-2..xsd",
    ],
)  # fmt: skip
def test_served_document_refuses_anything_but_plain_existing_names(name: str) -> None:
    assert served_document(name, BASE) is None


def _addresses(root: etree._Element) -> set[str]:
    found = root.findall(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{WSDL_SOAP11}}}address")
    found += root.findall(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{WSDL_SOAP12}}}address")
    # 4: the SubscriptionManager also has the PausableSubscriptionManager ports, the PullPoint the CreatePullPoint ones
    assert len(found) in {2, 4}
    return {element.get("location", "") for element in found}


def _import_locations(root: etree._Element) -> list[str]:
    locations = [element.get("location", "") for element in root.findall(f"{{{WSDL}}}import")]
    locations += [
        element.get("schemaLocation", "")
        for element in root.findall(f"{{{WSDL}}}types/{{{XSD}}}schema/{{{XSD}}}import")
    ]
    assert locations
    return locations


@pytest.mark.parametrize("endpoint", sorted(contract.SERVICE_WSDLS))
def test_service_wsdl_sets_addresses_and_absolute_imports(endpoint: str) -> None:
    service_url = f"{BASE}/wsn/{endpoint}"
    root = xmlsafe.parse(service_wsdl(endpoint, service_url, BASE))
    assert _addresses(root) == {service_url}
    for location in _import_locations(root):
        assert re.fullmatch(re.escape(BASE) + r"/wsdl/[A-Za-z0-9._-]+\.(wsdl|xsd)", location), location
        assert served_document(location.rsplit("/", 1)[1], BASE) is not None


def test_service_wsdl_escapes_urls_as_xml() -> None:
    served = service_wsdl("NotificationProducer", f"{BASE}/wsn/NotificationProducer;a=1&b=2", BASE)
    assert b"a=1&amp;b=2" in served
    assert _addresses(xmlsafe.parse(served)) == {f"{BASE}/wsn/NotificationProducer;a=1&b=2"}


def test_served_document_refuses_a_bad_base_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        served_document("b-2.xsd", "hiem.example.org")


def test_service_wsdl_refuses_unknown_endpoints_and_bad_urls() -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        service_wsdl("NotificationConsumer", f"{BASE}/wsn/NotificationConsumer", BASE)
    with pytest.raises(ValueError, match="service_url"):
        service_wsdl("NotificationProducer", "/wsn/NotificationProducer", BASE)
    with pytest.raises(ValueError, match="base_url"):
        service_wsdl("NotificationProducer", f"{BASE}/wsn/NotificationProducer", "ftp://hiem.example.org")
    with pytest.raises(ValueError, match="base_url"):
        service_wsdl("NotificationProducer", f"{BASE}/wsn/NotificationProducer", f"{BASE}/?x=1")


# --- the service WSDLs against the OASIS portTypes ----------------------------------------------------

EXPECTED_ACTIONS = {
    "NotificationProducer": {
        "Subscribe": f"{BW}/NotificationProducer/SubscribeRequest",
        "GetCurrentMessage": f"{BW}/NotificationProducer/GetCurrentMessageRequest",
    },
    "SubscriptionManager": {
        "Renew": f"{BW}/SubscriptionManager/RenewRequest",
        "Unsubscribe": f"{BW}/SubscriptionManager/UnsubscribeRequest",
    },
    "NotificationBroker": {
        "Notify": f"{BW}/NotificationConsumer/Notify",
        "Subscribe": f"{BW}/NotificationProducer/SubscribeRequest",
        "GetCurrentMessage": f"{BW}/NotificationProducer/GetCurrentMessageRequest",
        "RegisterPublisher": f"{BRW}/RegisterPublisher/RegisterPublisherRequest",
    },
    "PullPoint": {
        "GetMessages": f"{BW}/PullPoint/GetMessagesRequest",
        "DestroyPullPoint": f"{BW}/PullPoint/DestroyPullPointRequest",
        "Notify": f"{BW}/NotificationConsumer/Notify",
    },
}

# Service WSDL endpoint -> the bindings of further portTypes it serves at the same address: binding name
# prefix (also the portType's local name) -> their actions.
FURTHER_BINDING_ACTIONS = {
    "SubscriptionManager": {
        "PausableSubscriptionManager": {
            "Renew": f"{BW}/PausableSubscriptionManager/RenewRequest",
            "Unsubscribe": f"{BW}/PausableSubscriptionManager/UnsubscribeRequest",
            "PauseSubscription": f"{BW}/PausableSubscriptionManager/PauseSubscriptionRequest",
            "ResumeSubscription": f"{BW}/PausableSubscriptionManager/ResumeSubscriptionRequest",
        },
    },
    "PullPoint": {
        "CreatePullPoint": {"CreatePullPoint": f"{BW}/CreatePullPoint/CreatePullPointRequest"},
    },
}


def _port_type(qname: etree.QName) -> etree._Element:
    file_name = {BW: "bw-2.wsdl", BRW: "brw-2.wsdl"}[qname.namespace]
    root = xmlsafe.parse((WSDL_DIR / file_name).read_bytes())
    (port_type,) = root.findall(f"{{{WSDL}}}portType[@name='{qname.localname}']")
    return port_type


@pytest.mark.parametrize("endpoint", sorted(EXPECTED_ACTIONS))
def test_bindings_cover_their_oasis_port_type_with_the_spec_actions_and_faults(endpoint: str) -> None:
    _check_bindings(endpoint, endpoint, EXPECTED_ACTIONS[endpoint])


@pytest.mark.parametrize(
    ("endpoint", "prefix"),
    [(endpoint, prefix) for endpoint, further in FURTHER_BINDING_ACTIONS.items() for prefix in further],
)
def test_further_bindings_cover_their_oasis_port_type_with_the_spec_actions_and_faults(
    endpoint: str, prefix: str
) -> None:
    _check_bindings(endpoint, prefix, FURTHER_BINDING_ACTIONS[endpoint][prefix])


def _check_bindings(endpoint: str, prefix: str, expected_actions: dict[str, str]) -> None:
    root = xmlsafe.parse((WSDL_DIR / contract.SERVICE_WSDLS[endpoint]).read_bytes())
    names = {f"{prefix}Soap11Binding", f"{prefix}Soap12Binding"}
    bindings = [b for b in root.findall(f"{{{WSDL}}}binding") if b.get("name") in names]
    assert len(bindings) == 2
    protocols = set()
    for binding in bindings:
        type_prefix, local = binding.get("type", "").split(":")
        assert local == prefix
        port_type = _port_type(etree.QName(binding.nsmap[type_prefix], local))
        soap_ns = WSDL_SOAP11 if binding.find(f"{{{WSDL_SOAP11}}}binding") is not None else WSDL_SOAP12
        protocols.add(soap_ns)
        soap_binding = binding.find(f"{{{soap_ns}}}binding")
        assert soap_binding is not None
        assert soap_binding.get("style") == "document"
        assert soap_binding.get("transport") == "http://schemas.xmlsoap.org/soap/http"
        assert binding.find("{http://www.w3.org/2006/05/addressing/wsdl}UsingAddressing") is not None
        abstract = {op.get("name"): op for op in port_type.findall(f"{{{WSDL}}}operation")}
        concrete = {op.get("name"): op for op in binding.findall(f"{{{WSDL}}}operation")}
        assert set(concrete) == set(abstract)  # WS-I BP R2718
        actions = {
            name: op.find(f"{{{soap_ns}}}operation").get("soapAction") for name, op in concrete.items()
        }
        assert actions == expected_actions
        for name, operation in concrete.items():
            assert operation.find(f"{{{WSDL}}}input/{{{soap_ns}}}body").get("use") == "literal"
            has_output = abstract[name].find(f"{{{WSDL}}}output") is not None
            assert (operation.find(f"{{{WSDL}}}output/{{{soap_ns}}}body") is not None) == has_output
            abstract_faults = {fault.get("name") for fault in abstract[name].findall(f"{{{WSDL}}}fault")}
            bound_faults = {}
            for fault in operation.findall(f"{{{WSDL}}}fault"):
                soap_fault = fault.find(f"{{{soap_ns}}}fault")
                assert soap_fault.get("use") == "literal"
                bound_faults[fault.get("name")] = soap_fault.get("name")
            assert set(bound_faults) == abstract_faults
            assert all(key == value for key, value in bound_faults.items())
    assert protocols == {WSDL_SOAP11, WSDL_SOAP12}


def test_pull_point_bindings_use_the_actions_the_broker_accepts() -> None:
    # hiem refuses a request whose wsa:Action is not the operation's (wsa:ActionNotSupported)
    bound = {**EXPECTED_ACTIONS["PullPoint"], **FURTHER_BINDING_ACTIONS["PullPoint"]["CreatePullPoint"]}
    assert bound == {
        "CreatePullPoint": pullpoint.ACTION_CREATE,
        "GetMessages": pullpoint.ACTION_GET,
        "DestroyPullPoint": pullpoint.ACTION_DESTROY,
        "Notify": messages.ACTION_NOTIFY,
    }


def test_pausable_subscription_manager_bindings_cover_their_port_type() -> None:
    root = xmlsafe.parse((WSDL_DIR / contract.SERVICE_WSDLS["SubscriptionManager"]).read_bytes())
    pausable = [b for b in root.findall(f"{{{WSDL}}}binding") if b.get("name", "").startswith("Pausable")]
    assert len(pausable) == 2
    port_type = _port_type(etree.QName(BW, "PausableSubscriptionManager"))
    abstract = {op.get("name") for op in port_type.findall(f"{{{WSDL}}}operation")}
    for binding in pausable:
        assert {op.get("name") for op in binding.findall(f"{{{WSDL}}}operation")} == abstract


@pytest.mark.parametrize("endpoint", sorted(contract.SERVICE_WSDLS))
def test_every_binding_is_checked_and_has_a_port_per_soap_version(endpoint: str) -> None:
    # The tests above check the bindings by name; a binding or port they would not look at must not exist.
    root = xmlsafe.parse((WSDL_DIR / contract.SERVICE_WSDLS[endpoint]).read_bytes())
    prefixes = [endpoint, *FURTHER_BINDING_ACTIONS.get(endpoint, {})]
    expected = {f"{prefix}Soap{version}": version for prefix in prefixes for version in ("11", "12")}
    assert {b.get("name") for b in root.findall(f"{{{WSDL}}}binding")} == {f"{n}Binding" for n in expected}
    (service,) = root.findall(f"{{{WSDL}}}service")
    assert service.get("name") == f"{endpoint}Service"
    ports = {port.get("name"): port for port in service.findall(f"{{{WSDL}}}port")}
    assert set(ports) == {f"{n}Port" for n in expected}
    for name, version in expected.items():
        port = ports[f"{name}Port"]
        assert port.get("binding") == f"hiem:{name}Binding"
        assert port.nsmap["hiem"] == "urn:hiem:broker:1"
        address_ns = WSDL_SOAP11 if version == "11" else WSDL_SOAP12
        (address,) = port
        assert address.tag == f"{{{address_ns}}}address"
        assert address.get("location") == f"http://hiem.invalid/wsn/{endpoint}"

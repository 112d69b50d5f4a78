"""Every fault element of the WS-N schemas (b-2, br-2, r-2) has a class in hiem.wsn.faults, and every class
is a fault element of the contract and renders a fault element that validates against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from hiem import contract, ns, xmlsafe
from hiem.soap.envelope import SoapVersion
from hiem.soap.faults import fault_envelope
from hiem.wsn import faults
from hiem.wsn.faults import ALL_FAULTS, InvalidFilterFault, SoapCode, WsnFault

XSD = "http://www.w3.org/2001/XMLSchema"
FAULT_SCHEMAS = ("b-2.xsd", "br-2.xsd", "r-2.xsd")
TIME_RANGE = (faults.UnacceptableInitialTerminationTimeFault, faults.UnacceptableTerminationTimeFault)
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def schema_fault_elements(files: tuple[str, ...] | list[str]) -> set[tuple[str, str]]:
    """(targetNamespace, name) of every top-level xsd:element whose name ends in "Fault"."""
    found = set()
    for name in files:
        root = xmlsafe.parse_file(str(contract.WSDL_DIR / name))
        target = root.get("targetNamespace")
        assert target, f"{name} has no targetNamespace"
        for element in root.iterchildren(f"{{{XSD}}}element"):
            local = element.get("name") or ""
            if local.endswith("Fault"):
                found.add((target, local))
    return found


SCHEMA_FAULTS = schema_fault_elements(FAULT_SCHEMAS)
#: every fault element of every schema hiem validates against (adds rp-2, bf-2, hiem.xsd, ...)
CONTRACT_FAULTS = schema_fault_elements(sorted(set(contract.WSN_SCHEMAS.values())))

def fault_params() -> list:
    return [pytest.param(cls, id=cls.__name__) for cls in ALL_FAULTS]


def make(cls: type[WsnFault], reason: str | None = None) -> WsnFault:
    if cls is InvalidFilterFault:
        return cls(reason, [f"{{{ns.WSNT}}}ProducerProperties", "{urn:example:filters}Custom"])
    if issubclass(cls, TIME_RANGE):
        return cls(reason, NOW, NOW + timedelta(days=1))
    return cls(reason)


def test_the_schemas_define_the_fault_elements_we_expect():
    assert len(SCHEMA_FAULTS) >= 20
    namespaces = {namespace for namespace, _ in SCHEMA_FAULTS}
    assert namespaces == {ns.WSNT, ns.WSNT_BR, ns.WSRF_R}
    assert SCHEMA_FAULTS < CONTRACT_FAULTS
    assert (ns.WSNT, "InvalidFilterFault") in SCHEMA_FAULTS
    assert (ns.WSRF_R, "ResourceUnknownFault") in SCHEMA_FAULTS


#: fault elements of the WS-N schemas with no class, and why: hiem has no operation that raises them
NOT_RAISED = {
    (ns.WSNT_BR, "PublisherRegistrationRejectedFault"): "RegisterPublisher is not offered",
    (ns.WSNT_BR, "PublisherRegistrationFailedFault"): "RegisterPublisher is not offered",
    (ns.WSNT_BR, "ResourceNotDestroyedFault"): "DestroyRegistration is not offered",
    (ns.WSRF_R, "ResourceUnavailableFault"): "no resource is ever unavailable: storage errors are Receiver faults",
    (ns.WSNT, "UnableToGetMessagesFault"): "GetMessages only fails on storage errors (Receiver faults)",
    (ns.WSNT, "UnableToDestroyPullPointFault"): "DestroyPullPoint only fails on storage errors",
    (ns.WSNT, "UnableToCreatePullPointFault"): "CreatePullPoint only fails on storage errors",
    (ns.WSNT, "PauseFailedFault"): "pausing an existing subscription cannot fail otherwise",
    (ns.WSNT, "ResumeFailedFault"): "resuming an existing subscription cannot fail otherwise",
}


def test_every_schema_fault_has_a_class_or_a_reason_it_has_none():
    mapped = {(cls.namespace, cls.local_name) for cls in ALL_FAULTS}
    assert not mapped & set(NOT_RAISED), "a fault listed as not raised has a class"
    missing = sorted(SCHEMA_FAULTS - mapped - set(NOT_RAISED))
    assert not missing, f"fault elements of {FAULT_SCHEMAS} with neither a class nor a reason: {missing}"
    assert set(NOT_RAISED) <= SCHEMA_FAULTS


@pytest.mark.parametrize("cls", fault_params())
def test_every_class_is_raised_by_some_operation(cls):
    """A fault class exists because an operation raises it (hiem/wsn and hiem/app code names it)."""
    sources = [path.read_text() for path in Path(faults.__file__).parent.rglob("*.py") if path.name != "faults.py"]
    assert any(cls.__name__ in text for text in sources), f"{cls.__name__} is raised nowhere in hiem.wsn"


@pytest.mark.parametrize("cls", fault_params())
def test_every_class_is_a_fault_element_of_the_contract(cls):
    """hiem sends no fault element that the schemas it serves (contract.WSN_SCHEMAS) do not declare."""
    assert (cls.namespace, cls.local_name) in CONTRACT_FAULTS, (
        f"{{{cls.namespace}}}{cls.local_name} is declared by no schema in contract.WSN_SCHEMAS")


def test_no_two_classes_share_a_fault_element():
    qnames = [make(cls).qname for cls in ALL_FAULTS]
    assert len(qnames) == len(set(qnames))
    assert WsnFault not in ALL_FAULTS


@pytest.mark.parametrize("cls", fault_params())
def test_rendered_fault_validates(cls):
    fault = make(cls, "a reason for the client")
    assert isinstance(fault, WsnFault)
    assert fault.code in (SoapCode.SENDER, SoapCode.RECEIVER)
    element = fault.detail(now=NOW)
    assert element.tag == f"{{{cls.namespace}}}{cls.local_name}"
    assert element.findtext(f"{{{ns.WSRF_BF}}}Description") == "a reason for the client"
    assert element.findtext(f"{{{ns.WSRF_BF}}}Timestamp") == "2026-01-02T03:04:05.678Z"
    errors = contract.validate_wsn(element)
    assert not errors, errors


@pytest.mark.parametrize("cls", fault_params())
def test_default_reason_and_default_timestamp_validate(cls):
    fault = make(cls)
    assert fault.reason == cls.default_reason
    errors = contract.validate_wsn(fault.detail())
    assert not errors, errors


def _envelope_params() -> list:
    return [pytest.param(cls, version, id=f"{cls.__name__}-{version.name}")
            for cls in ALL_FAULTS for version in SoapVersion]


@pytest.mark.parametrize(("cls", "version"), _envelope_params())
def test_fault_detail_in_a_soap_envelope_validates(cls, version):
    envelope = fault_envelope(version, make(cls))
    reparsed = xmlsafe.parse(etree.tostring(envelope))
    fault = reparsed.find(f"{version.qname('Body')}/{version.qname('Fault')}")
    assert fault is not None
    detail = fault.find(version.qname("Detail") if version is SoapVersion.SOAP12 else "detail")
    assert detail is not None
    (element,) = [child for child in detail if isinstance(child.tag, str)]
    assert element.tag == f"{{{cls.namespace}}}{cls.local_name}"
    errors = contract.validate_wsn(element)
    assert not errors, errors


@pytest.mark.parametrize("cls", TIME_RANGE, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("minimum, maximum", [
    (NOW, None),
    (NOW, NOW + timedelta(hours=1)),
    (NOW.replace(tzinfo=None), NOW.replace(tzinfo=None) + timedelta(seconds=1)),
    (NOW.astimezone(timezone(timedelta(hours=-5))), NOW.astimezone(timezone(timedelta(hours=9, minutes=30)))),
    (NOW.replace(microsecond=0), None),
], ids=["minimum-only", "both", "naive", "offsets", "whole-seconds"])
def test_time_range_faults_validate(cls, minimum, maximum):
    element = cls(None, minimum, maximum).detail(now=NOW)
    assert element.findtext(f"{{{ns.WSNT}}}MinimumTime") == minimum.isoformat()
    assert (element.find(f"{{{ns.WSNT}}}MaximumTime") is None) == (maximum is None)
    errors = contract.validate_wsn(element)
    assert not errors, errors


@pytest.mark.parametrize("unknown", [
    ["{urn:example:filters}Custom"],
    [f"{{{ns.WSNT}}}MessageContent", f"{{{ns.WSNT}}}ProducerProperties", "{urn:a}One", "{urn:b}Two"],
], ids=["one", "several"])
def test_invalid_filter_fault_lists_each_unknown_filter_as_a_qname(unknown):
    element = InvalidFilterFault(None, unknown).detail(now=NOW)
    listed = element.findall(f"{{{ns.WSNT}}}UnknownFilter")
    assert len(listed) == len(unknown)
    for node, clark in zip(listed, unknown, strict=True):
        prefix, _, local = node.text.partition(":")
        assert f"{{{node.nsmap[prefix]}}}{local}" == clark
    errors = contract.validate_wsn(element)
    assert not errors, errors


@pytest.mark.parametrize("version", list(SoapVersion), ids=lambda v: v.name)
@pytest.mark.parametrize("namespace", ["urn:example:filters", ns.WSNT, ns.WSRF_BF, ns.WSRF_R, ns.WSA])
def test_unknown_filter_qname_resolves_on_the_wire(namespace, version):
    """What a client reads: the UnknownFilter text must resolve, in the received envelope, to the filter.

    Regression: a filter in a namespace the fault element already binds (wsnt:MessageContent) used to be
    written as ``uf:MessageContent`` whose ``xmlns:uf`` lxml dropped when the detail joined the envelope."""
    clark = f"{{{namespace}}}MessageContent"
    wire = etree.tostring(fault_envelope(version, InvalidFilterFault(None, [clark])))
    node = xmlsafe.parse(wire).find(f".//{{{ns.WSNT}}}UnknownFilter")
    prefix, _, local = node.text.partition(":")
    assert prefix in node.nsmap, f"prefix {prefix!r} is not declared: {wire.decode()}"
    assert f"{{{node.nsmap[prefix]}}}{local}" == clark


def test_invalid_filter_fault_needs_an_unknown_filter():
    with pytest.raises(ValueError):
        InvalidFilterFault(None, [])


def test_the_validation_is_not_vacuous():
    """A fault missing what its schema type requires is reported, so the tests above mean something."""
    element = faults.TopicNotSupportedFault().detail(now=NOW)
    element.remove(element.find(f"{{{ns.WSRF_BF}}}Timestamp"))
    assert contract.validate_wsn(element)

    invalid_filter = make(InvalidFilterFault).detail(now=NOW)
    for node in invalid_filter.findall(f"{{{ns.WSNT}}}UnknownFilter"):
        invalid_filter.remove(node)
    assert contract.validate_wsn(invalid_filter)

    time_range = make(faults.UnacceptableTerminationTimeFault).detail(now=NOW)
    time_range.find(f"{{{ns.WSNT}}}MinimumTime").text = "tomorrow"
    assert contract.validate_wsn(time_range)


def test_sequence_out_of_range_names_the_oldest_retained_number_in_a_valid_detail():
    element = faults.SequenceOutOfRangeFault("gone", oldest=17).detail(now=NOW)
    assert contract.validate_wsn(element) == []
    code = element.find(f"{{{ns.WSRF_BF}}}ErrorCode")
    assert (code.get("dialect"), code.text) == (faults.OLDEST_RETAINED_DIALECT, "17")

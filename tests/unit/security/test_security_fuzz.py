"""Mutated signed envelopes: verify() answers with a SecurityResult or a SecurityError, never anything else.

The mutations are the edits an attacker makes to a captured message: delete, duplicate, move or retag
an element, change text or an attribute (with values chosen to reach the algorithm, id and time
checks), slip in a comment. Each example starts again from one genuine signed message.
"""

from __future__ import annotations

import copy
import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from hiem import ns, xmlsafe
from hiem.security import MemoryNonceCache, SecurityError, SecurityPolicy, SecurityResult

INTERESTING = [
    "", "#", "#nowhere", "2030-01-01T00:00:00Z", "1999-01-01T00:00:00Z", "yesterday", "AAAA", "!!",
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/10/xml-exc-c14n#", "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256", "urn:oasis:names:tc:SAML:2.0:cm:bearer",
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID", "2.0", "1.1",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
]
TAGS = [
    f"{{{ns.SOAP12}}}Body", f"{{{ns.SOAP12}}}Header", f"{{{ns.WSSE}}}Security", f"{{{ns.WSU}}}Timestamp",
    f"{{{ns.SAML2}}}Assertion", f"{{{ns.DS}}}Signature", f"{{{ns.DS}}}Reference", f"{{{ns.WSA}}}MessageID",
    f"{{{ns.WSSE}}}BinarySecurityToken", "{urn:attacker}Wrapper",
]
ATTRIBUTES = ["URI", "Algorithm", "ID", "Id", f"{{{ns.WSU}}}Id", "NotOnOrAfter", "NotBefore", "Method", "ValueType",
              "Version", "IssueInstant"]
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)
values = st.one_of(st.sampled_from(INTERESTING), xml_text)
operation = st.tuples(
    st.sampled_from(["delete", "text", "attribute", "drop-attribute", "move", "duplicate", "comment", "retag"]),
    st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=10_000),
    values, st.sampled_from(ATTRIBUTES), st.sampled_from(TAGS),
)


@functools.cache
def genuine(kit) -> bytes:  # type: ignore[no-untyped-def]
    return etree.tostring(kit.message(kit.assertion(lifetime_seconds=3600)))


def mutate(document: etree._Element, op: tuple) -> None:  # type: ignore[type-arg]
    kind, first, second, value, attribute, tag = op
    elements = [element for element in document.iter() if isinstance(element.tag, str)]
    target, other = elements[first % len(elements)], elements[second % len(elements)]
    parent = target.getparent()
    try:
        if kind == "delete" and parent is not None:
            parent.remove(target)
        elif kind == "text":
            target.text = value
        elif kind == "attribute":
            target.set(attribute, value)
        elif kind == "drop-attribute" and target.attrib:
            del target.attrib[sorted(target.attrib)[first % len(target.attrib)]]
        elif kind == "move" and parent is not None and target not in other.iterancestors() and other is not target:
            other.append(target)
        elif kind == "duplicate" and parent is not None:
            target.addnext(copy.deepcopy(target))
        elif kind == "comment":
            target.insert(0, etree.Comment(value.replace("--", "")))
        elif kind == "retag":
            target.tag = tag
    except ValueError:
        pass  # the value is not valid XML text (lxml refuses to build it): nothing an attacker can send


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(operation, min_size=0, max_size=4))
def test_mutated_envelopes_give_a_result_or_a_security_error(kit, operations: list) -> None:  # type: ignore[type-arg]
    document = xmlsafe.parse(genuine(kit))
    for op in operations:
        mutate(document, op)
    for policy in (kit.policy(), kit.policy(audience="https://hiem.example.org/"),
                   SecurityPolicy.dev(trusted_idp_certs=(kit.idp.cert_pem,))):
        try:
            result = kit.verifier(policy, cache=MemoryNonceCache()).verify(copy.deepcopy(document))
        except SecurityError as error:
            assert error.reason and error.subcode.startswith(f"{{{ns.WSSE}}}")
        else:
            assert isinstance(result, SecurityResult)

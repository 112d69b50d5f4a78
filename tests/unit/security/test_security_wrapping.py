"""XML signature wrapping and comment tricks: the signature stays valid, the message must still be refused.

Each attack keeps every digest and the SignatureValue intact and changes which element hiem would
*process*, the classic shapes from "On Breaking SAML" (Somorovsky et al., 2012) and CVE-2017-11427.
"""

from __future__ import annotations

import copy

import pytest
from lxml import etree

from hiem import ns, xmlsafe
from hiem.security import AlertType, EnvelopeSigner, SecurityError

BODY = f"{{{ns.SOAP12}}}Body"
HEADER = f"{{{ns.SOAP12}}}Header"
SECURITY = f"{{{ns.WSSE}}}Security"
WSU_ID = f"{{{ns.WSU}}}Id"


def evil_body(with_id: str | None = None) -> str:
    id_attribute = f' xmlns:u="{ns.WSU}" u:Id="{with_id}"' if with_id else ""
    return f'<s:Body{id_attribute}><p xmlns="urn:example:payload">unsubscribe everyone</p></s:Body>'


def wrap(message: etree._Element, new_body: str, *, before: str, wrapper: str | None = None) -> etree._Element:
    """Move the signed Body, byte for byte, in front of the ``before`` tag, and put ``new_body`` in its place.

    Done on the serialized text, as an attacker would: moving it with lxml would tidy its namespace
    declarations and so change its canonical form, which the digest would catch for the wrong reason.
    """
    raw = etree.tostring(message).decode()
    start, end = raw.index("<s:Body"), raw.index("</s:Body>") + len("</s:Body>")
    signed_body = raw[start:end]
    raw = raw[:start] + new_body + raw[end:]
    moved = f'<x:{wrapper} xmlns:x="urn:attacker">{signed_body}</x:{wrapper}>' if wrapper else signed_body
    assert before in raw
    return xmlsafe.parse(raw.replace(before, moved + before, 1).encode())


def refuse_as_signature_failure(kit, message: etree._Element, match: str) -> None:  # type: ignore[no-untyped-def]
    # The reasons matched below are only reachable after signxml verified every digest and the
    # SignatureValue: each refusal comes from the wrapping checks, not from a damaged signature.
    with pytest.raises(SecurityError, match=match) as caught:
        kit.accept(message)
    assert caught.value.alert_type is AlertType.SIGNATURE


def test_signed_body_moved_into_the_security_header(kit) -> None:
    message = wrap(kit.message(), evil_body(), before="</wsse:Security>")
    refuse_as_signature_failure(kit, message, "does not cover the SOAP Body")


def test_signed_body_moved_into_a_wrapper_header(kit) -> None:
    message = wrap(kit.message(), evil_body(), before="</s:Header>", wrapper="Wrapper")
    refuse_as_signature_failure(kit, message, "neither the SOAP Body nor a header block")


def test_signed_body_moved_into_a_wrapper_inside_security(kit) -> None:
    message = wrap(kit.message(), evil_body(with_id="id-evil"), before="</wsse:Security>", wrapper="Wrapper")
    refuse_as_signature_failure(kit, message, "neither the SOAP Body nor a header block")


def test_evil_body_reusing_the_signed_id_is_refused_as_a_duplicate_id(kit) -> None:
    message = kit.message()
    signed_id = message.find(BODY).get(WSU_ID)
    message = wrap(message, evil_body(with_id=signed_id), before="</s:Header>", wrapper="Wrapper")
    refuse_as_signature_failure(kit, message, "appears more than once")


def test_duplicate_id_anywhere_in_the_document_is_refused(kit) -> None:
    message = kit.message()
    timestamp_id = message.find(f"{HEADER}/{SECURITY}/{{{ns.WSU}}}Timestamp").get(WSU_ID)
    decoy = etree.SubElement(message.find(f"{BODY}//{{urn:example:payload}}p"), "{urn:attacker}x")
    decoy.set("ID", timestamp_id)
    refuse_as_signature_failure(kit, message, "appears more than once")


def test_second_unsigned_assertion_is_refused(kit) -> None:
    message = kit.message()
    security = message.find(f"{HEADER}/{SECURITY}")
    forged = xmlsafe.parse(kit.assertion(issuer_identity=kit.attacker))
    security.insert(0, forged)
    with pytest.raises(SecurityError, match="more than one saml2:Assertion"):
        kit.accept(message)


def test_signed_assertion_hidden_in_a_wrapper_behind_a_forged_one(kit) -> None:
    message = kit.message()
    security = message.find(f"{HEADER}/{SECURITY}")
    genuine = security.find(f"{{{ns.SAML2}}}Assertion")
    forged = copy.deepcopy(genuine)
    forged.find(f".//{{{ns.SAML2}}}NameID").text = "UID=root"
    forged.remove(forged.find(f"{{{ns.DS}}}Signature"))
    security.replace(genuine, forged)
    etree.SubElement(security, "{urn:attacker}Wrapper").append(genuine)
    with pytest.raises(SecurityError, match="appears more than once"):
        kit.accept(message)


def test_comment_in_name_id_does_not_truncate_the_subject(kit) -> None:
    # exclusive c14n drops comments, so the signature still verifies; what is read must be the signed text.
    message = kit.message()
    name_id = message.find(f".//{{{ns.SAML2}}}NameID")
    full = name_id.text
    name_id.text = "UID=jdoe"
    comment = etree.Comment("x")
    comment.tail = full[len("UID=jdoe"):]
    name_id.append(comment)
    result = kit.accept(message)
    assert result.subject_id == full


def test_comment_in_message_id_does_not_dodge_the_nonce_cache(kit) -> None:
    verifier = kit.verifier(kit.policy(require_assertion=False))
    original = kit.signed_without_assertion(message_id="urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    replay = copy.deepcopy(original)
    verifier.verify(original)
    message_id = replay.find(f"{HEADER}/{{{ns.WSA}}}MessageID")
    message_id.text = "urn:uuid:"
    comment = etree.Comment("")
    comment.tail = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    message_id.append(comment)
    with pytest.raises(SecurityError, match="already received") as caught:
        verifier.verify(replay)
    assert caught.value.alert_type is AlertType.REPLAY


class PayloadOnlySigner(EnvelopeSigner):
    """A (pinned) signer whose signature covers one element inside the Body instead of the Body."""

    @staticmethod
    def _targets(parts, timestamp):  # type: ignore[no-untyped-def]
        payload = parts.body.find(".//{urn:example:payload}p")
        return [payload, timestamp, *[b for b in parts.header_blocks if etree.QName(b).namespace == ns.WSA]]


def test_signature_over_an_element_inside_the_body_does_not_count_as_the_body(kit) -> None:
    signer = PayloadOnlySigner(kit.gateway.key_pem, kit.gateway.cert_pem)
    message = kit.wire(signer.sign(kit.envelope()))
    with pytest.raises(SecurityError, match="neither the SOAP Body nor a header block"):
        kit.accept(message, kit.policy(require_assertion=False))

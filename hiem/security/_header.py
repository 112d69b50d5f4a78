"""Checks (1) and (2): the wsse:Security header block and its wsu:Timestamp.

WS-Security 1.1 SOAP Message Security §6 allows several Security headers for different actors; a
HIEM message is addressed to one ultimate receiver, so more than one is refused as ambiguous rather
than guessing which one applies. §10 defines wsu:Timestamp: Created says when the message was made,
Expires when it stops being valid. A message is accepted while both the Timestamp and hiem's own
``freshness_window_seconds`` (counted from Created) say it is fresh, which also bounds how long the
nonce cache must remember it.
"""

from __future__ import annotations

from datetime import timedelta

from hiem import ns
from hiem.security._inbound import Inbound
from hiem.security._processor import children, format_instant, id_index, parse_instant, q, text_of
from hiem.security.errors import FaultSubcode, SecurityError


class SecurityHeaderCheck:
    """Find the wsse:Security header; decide whether this message is verified at all."""

    def verify(self, inbound: Inbound) -> None:
        policy = inbound.policy
        required = policy.require_assertion or policy.require_signature
        if not required and not policy.verify_if_present:
            return  # dev mode with verification switched off: the header is ignored, nothing is proved
        headers = inbound.parts.security_headers()
        if not headers:
            if required:
                raise SecurityError.authentication("the message has no wsse:Security header",
                                                   FaultSubcode.INVALID_SECURITY)
            return
        if len(headers) > 1:
            raise SecurityError.policy("the message has more than one wsse:Security header")
        inbound.security = security = headers[0]
        inbound.active = True
        try:
            # Every id in the whole document, once: a duplicate is how a wrapping attack makes one
            # reference mean two elements (the one checked and the one processed).
            inbound.ids = id_index(inbound.parts.envelope)
        except ValueError as exc:
            raise SecurityError.signature(str(exc), FaultSubcode.INVALID_SECURITY) from exc
        inbound.timestamp = inbound.one_child(security, q(ns.WSU, "Timestamp"), "wsu:Timestamp")
        inbound.assertion_element = inbound.one_child(security, q(ns.SAML2, "Assertion"), "saml2:Assertion")
        inbound.one_child(security, q(ns.DS, "Signature"), "message ds:Signature")


class TimestampCheck:
    """wsu:Timestamp: Created not in the future, Expires not past, the message not older than the window."""

    def verify(self, inbound: Inbound) -> None:
        if not inbound.active:
            return
        timestamp = inbound.timestamp
        if timestamp is None:
            return  # required only with a signature; the signature check says so (after "not signed")
        created_elements = children(timestamp, q(ns.WSU, "Created"))
        expires_elements = children(timestamp, q(ns.WSU, "Expires"))
        if len(created_elements) != 1 or len(expires_elements) > 1:
            raise SecurityError.policy("wsu:Timestamp must hold one wsu:Created and at most one wsu:Expires")
        try:
            created = parse_instant(text_of(created_elements[0]))
            expires = parse_instant(text_of(expires_elements[0])) if expires_elements else None
        except ValueError as exc:
            raise SecurityError.policy(f"wsu:Timestamp holds an unreadable time: {exc}") from exc
        now, skew = inbound.now, inbound.skew
        if created > now + skew:
            raise SecurityError.expired(f"the message timestamp is in the future "
                                        f"(wsu:Created {format_instant(created)})")
        if expires is not None and expires < created:
            raise SecurityError.policy("wsu:Timestamp expires before it was created")
        if expires is not None and now >= expires + skew:
            raise SecurityError.expired(f"the message has expired (wsu:Expires {format_instant(expires)})")
        fresh_until = created + timedelta(seconds=inbound.policy.freshness_window_seconds)
        if expires is not None:
            fresh_until = min(fresh_until, expires)
        if now >= fresh_until + skew:
            raise SecurityError.expired(f"the message is too old to accept (wsu:Created {format_instant(created)})")
        inbound.fresh_until = fresh_until + skew

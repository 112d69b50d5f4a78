"""XML name rules shared by the expression parser and the TopicNamespace reader.

Topic names are ``xsd:NCName`` (t-1.xsd TopicType/@name) and topic expressions are built from NCNames
and QNames (WS-Topics 1.3 §7). The character classes are those of XML 1.0 (5th edition) §2.3 without the
colon, as in Namespaces in XML 1.0 §3, which is also what libxml2 applies when it validates an NCName.
"""

from __future__ import annotations

import re

_START = (
    "A-Z_a-z"
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_REST = _START + r"\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"

#: one NCName, anchored nowhere (for scanning).
NCNAME_RE = re.compile(f"[{_START}][{_REST}]*")
#: a character that may continue an NCName but not start one (digit, '-', '.', combining marks...).
NAME_CONTINUATION_RE = re.compile(f"[{_REST}]")

#: XML's four whitespace characters (XML 1.0 §2.3 S); ``str.strip()`` would also eat NBSP and friends.
XML_WHITESPACE = " \t\r\n"


def is_ncname(value: str) -> bool:
    """True when ``value`` is exactly one NCName."""
    return NCNAME_RE.fullmatch(value) is not None


def xml_strip(value: str) -> str:
    """Strip XML whitespace only, the way an ``xsd:token`` value is trimmed."""
    return value.strip(XML_WHITESPACE)

"""Errors of the WS-Topics 1.3 engine.

They carry plain data (a reason, a URI) and never XML: the WS-N layer maps them to the faults of
WS-BaseNotification 1.3 §4.2 (``TopicExpressionError`` -> InvalidTopicExpressionFault,
``UnknownDialectError`` -> TopicExpressionDialectUnknownFault). ``TopicNamespaceError`` never reaches a
client: it stops an operator from loading a broken TopicNamespace document (t-1.xsd TopicNamespaceType). ::

    HiemError
     +-- TopicExpressionError    the expression breaks its dialect's grammar (WS-Topics 1.3 §7)
     +-- UnknownDialectError     the Dialect URI is not Simple, Concrete or Full
     +-- TopicNamespaceError     a TopicNamespace document is malformed or inconsistent
"""

from __future__ import annotations

from hiem.errors import HiemError


class TopicExpressionError(HiemError):
    """A topic expression is not valid in its dialect; ``reason`` says what is wrong, fit for a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownDialectError(HiemError):
    """A Dialect URI that this engine does not implement (or none at all); ``uri`` is what was given."""

    def __init__(self, uri: str | None) -> None:
        if uri is None or not uri.strip():
            message = "no topic expression Dialect given"
        else:
            message = f"unknown topic expression Dialect {uri!r}"
        super().__init__(message)
        self.uri = uri


class TopicNamespaceError(HiemError):
    """A TopicNamespace document cannot be loaded; ``reason`` names the element or attribute at fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

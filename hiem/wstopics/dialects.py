"""The three topic expression dialects of WS-Topics 1.3 §7, as an Enum whose values are their URIs.

WS-BaseNotification 1.3 §4.2 makes the ``Dialect`` attribute of a TopicExpression mandatory and asks the
producer to fault a dialect it does not know, so an unknown URI raises
:class:`~hiem.wstopics.errors.UnknownDialectError` from the Enum lookup itself: ``TopicDialect(uri)``
and ``TopicDialect.from_uri(uri)`` never return anything but one of the three members. Picking a default
when a message carries no Dialect (HIEM v2.0 §2.4 and §3.1.2 name Concrete) is the caller's job.
"""

from __future__ import annotations

from enum import StrEnum

from hiem.wstopics.errors import UnknownDialectError

_BASE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/"


class TopicDialect(StrEnum):
    """A WS-Topics 1.3 TopicExpression dialect; the value (and ``str()``) is the Dialect URI."""

    #: §7.1: one root topic, a QName.
    SIMPLE = _BASE + "Simple"
    #: §7.2: one topic anywhere in a tree, a path ``prefix:Root/child/...``.
    CONCRETE = _BASE + "Concrete"
    #: §7.3: path patterns with ``*``, ``//``, ``.`` and ``|``.
    FULL = _BASE + "Full"

    @classmethod
    def _missing_(cls, value: object) -> TopicDialect:
        raise UnknownDialectError(None if value is None else str(value))

    @classmethod
    def from_uri(cls, uri: str | None) -> TopicDialect:
        """The dialect named by a ``Dialect`` attribute value (surrounding whitespace ignored).

        Raises UnknownDialectError for None, an empty value or any other URI. URIs are compared exactly
        (no case folding), as WS-BaseNotification compares Dialect URIs.
        """
        if uri is None or not uri.strip():
            raise UnknownDialectError(uri)
        return cls(uri.strip())

"""Writing one topic as expression text, for the ``wsnt:Topic`` of an outgoing Notify.

WS-BaseNotification 1.3 §3.2 has each NotificationMessage name exactly one topic, and HIEM v2.0 §3.1.4
asks for it in the dialect of the subscription. A concrete topic is written the same way in every dialect
that can hold it: ``prefix:Root`` (Simple, §7.1, roots only) or ``prefix:Root/child/...`` (Concrete
§7.2, and Full §7.3, whose grammar contains Concrete's).
"""

from __future__ import annotations

from hiem.wstopics._names import is_ncname
from hiem.wstopics.dialects import TopicDialect
from hiem.wstopics.model import TopicPath


def render_topic(topic: TopicPath, dialect: TopicDialect, prefix: str = "tns") -> tuple[str, dict[str, str]]:
    """Return ``(text, nsmap)``: the expression for ``topic`` and the declarations it needs.

    ``nsmap`` is ``{prefix: topic.namespace}``, ready for lxml. A topic in no namespace is written
    unprefixed with an empty nsmap; the caller must then make sure no default namespace is in scope on
    the element, or the reader would put the name in that namespace.
    Raises ValueError for a non-root topic in the Simple dialect, or a prefix that is not an NCName.
    """
    dialect = TopicDialect(dialect)
    if dialect is TopicDialect.SIMPLE and not topic.is_root:
        raise ValueError(f"the Simple dialect (WS-Topics 1.3 §7.1) names root topics only, not {topic}")
    text = "/".join(topic.path)
    if not topic.namespace:
        return text, {}
    if not is_ncname(prefix) or prefix.lower().startswith("xml"):
        raise ValueError(f"{prefix!r} cannot be used as a namespace prefix")
    return f"{prefix}:{text}", {prefix: topic.namespace}

"""WS-Topics 1.3 as a pure library: dialects, topic expressions, topic trees. No database, no SOAP.

* :mod:`~hiem.wstopics.dialects`: the Simple, Concrete and Full dialect URIs (§7.1-7.3).
* :mod:`~hiem.wstopics.expressions`: parse an expression once, then ``matches`` / ``expand`` topics.
* :mod:`~hiem.wstopics.model`: TopicPath, TopicNode, TopicNamespace as frozen values.
* :mod:`~hiem.wstopics.namespace_doc`: read TopicNamespace documents, build the wstop:TopicSet.
* :mod:`~hiem.wstopics.render`: write one topic back as expression text for an outgoing Notify.
"""

from __future__ import annotations

from hiem.wstopics.dialects import TopicDialect
from hiem.wstopics.errors import TopicExpressionError, TopicNamespaceError, UnknownDialectError
from hiem.wstopics.expressions import TopicExpression, parse_expression
from hiem.wstopics.model import TopicNamespace, TopicNode, TopicPath
from hiem.wstopics.namespace_doc import parse_topic_namespace, topic_set_element
from hiem.wstopics.render import render_topic

__all__ = [
    "TopicDialect",
    "TopicExpression",
    "TopicExpressionError",
    "TopicNamespace",
    "TopicNamespaceError",
    "TopicNode",
    "TopicPath",
    "UnknownDialectError",
    "parse_expression",
    "parse_topic_namespace",
    "render_topic",
    "topic_set_element",
]

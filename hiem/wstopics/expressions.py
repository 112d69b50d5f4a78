"""Topic expressions (WS-Topics 1.3 §7): parse once at Subscribe or Notify time, then match plain data.

:func:`parse_expression` turns the text of a ``wsnt:TopicExpression`` / ``wsnt:Topic`` element into a
:class:`TopicExpression`. Its prefixes are resolved against the element's in-scope namespaces (lxml
``element.nsmap``) and an unprefixed root takes the default namespace, as for any ``xsd:QName`` value
(Simple and Concrete are QName-based; Full follows them so a Concrete expression means the same in Full).

What each dialect covers, exactly and nothing more:

* Simple (§7.1) ``p:Root`` is that root topic only.
* Concrete (§7.2) ``p:Root/a/b`` is that one topic only, never its descendants.
* Full (§7.3) paths are matched like XPath location steps over the topic tree, from the root of the
  namespace: ``/`` child, ``//`` descendant, ``*`` any name, ``.`` self, ``|`` union. So ``p:a/b`` is
  one topic, ``p:a/*`` its children, ``p:a//*`` all its descendants, ``p:a//.`` ``a`` and all its
  descendants, ``p:*`` every root of ``p``, ``p://*`` every topic of ``p``, ``p://x`` every topic named
  ``x`` at any depth.

Subscriptions are compiled into the database with :meth:`TopicExpression.expand` over the known topics;
:attr:`TopicExpression.is_wildcard` says whether topics loaded later may also match (then re-expand).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hiem.wstopics._names import xml_strip
from hiem.wstopics._syntax import ANY, SELF, Axis, PathPattern, parse_paths
from hiem.wstopics.dialects import TopicDialect
from hiem.wstopics.errors import TopicExpressionError
from hiem.wstopics.model import TopicPath

#: Longest expression accepted, in characters after trimming. The grammar has no limit; this bounds
#: the work one Subscribe can cause (a Full union is matched path by path against every known topic).
MAX_EXPRESSION_LENGTH = 4096


@dataclass(frozen=True)
class TopicExpression:
    """A parsed topic expression. Build it with :func:`parse_expression`, not directly.

    ``text`` is the normalized expression (trimmed; child QNames written as NCNames) and
    ``namespaces`` the prefix -> URI pairs that text needs, with ``""`` as the key of the default
    namespace, so ``parse_expression(e.text, e.dialect, e.namespaces) == e``.
    """

    dialect: TopicDialect
    text: str
    _namespaces: tuple[tuple[str, str], ...] = field(repr=False)
    _paths: tuple[PathPattern, ...] = field(repr=False)

    @property
    def namespaces(self) -> dict[str, str]:
        """The namespace declarations the normalized text relies on (a fresh dict on every call)."""
        return dict(self._namespaces)

    @property
    def is_wildcard(self) -> bool:
        """True when the expression may cover topics that are not in the trees yet (``*`` or ``//``)."""
        return any(step.test == ANY or step.axis is Axis.DESCENDANT
                   for path in self._paths for step in path.steps)

    def single_topic(self) -> TopicPath | None:
        """The one topic the expression names, or None when it names a pattern or several topics.

        Always a topic for Simple and Concrete; for Full only a single path of ``/`` steps with names
        (``p:a/b``, also ``p:a/b/.``), never with ``*``, ``//`` or ``|``.
        """
        if len(self._paths) != 1:
            return None
        path = self._paths[0]
        names: list[str] = []
        for step in path.steps:
            if step.axis is Axis.DESCENDANT or step.test == ANY:
                return None
            if step.test != SELF:
                names.append(step.test)
        return TopicPath(path.namespace, tuple(names))

    def matches(self, topic: TopicPath) -> bool:
        """True when ``topic`` is one of the topics the expression identifies."""
        return any(_path_matches(path, topic) for path in self._paths)

    def expand(self, known: Iterable[TopicPath]) -> set[TopicPath]:
        """The subset of ``known`` that the expression covers."""
        return {topic for topic in known if self.matches(topic)}

    def __str__(self) -> str:
        return self.text


def _path_matches(path: PathPattern, topic: TopicPath) -> bool:
    """Evaluate ``path`` along the chain root..topic; the topic matches if the last node is selected.

    Every step moves down (``/``, ``//``) or stays (``.``), so only the topic's ancestors-or-self can
    lead to it: a node is a depth 0..n on that chain (0 is the namespace's virtual root above the roots).
    """
    if topic.namespace != path.namespace:
        return False
    names = topic.path
    depth = len(names)
    current = {0}
    for step in path.steps:
        if step.test == SELF:
            if step.axis is Axis.DESCENDANT:  # '//.' is descendant-or-self
                current = set(range(min(current), depth + 1))
            continue  # '/.' is the node itself
        reached: set[int] = set()
        for start in current:
            ends = (start + 1,) if step.axis is Axis.CHILD else range(start + 1, depth + 1)
            reached.update(end for end in ends
                           if end <= depth and (step.test == ANY or names[end - 1] == step.test))
        if not reached:
            return False
        current = reached
    return depth in current


def parse_expression(text: str, dialect: TopicDialect, nsmap: Mapping[str | None, str]) -> TopicExpression:
    """Parse a topic expression of ``dialect`` (WS-Topics 1.3 §7).

    ``nsmap`` is the in-scope namespace map of the element the expression came from (lxml
    ``element.nsmap``): prefix -> URI, with ``None`` (or ``""``) for the default namespace. Surrounding
    XML whitespace is ignored. Raises TopicExpressionError with a reason for anything the dialect's
    grammar does not allow, and for a prefix that is not bound.
    """
    if not isinstance(text, str):
        raise TopicExpressionError("a topic expression must be text")
    stripped = xml_strip(text)
    if len(stripped) > MAX_EXPRESSION_LENGTH:
        raise TopicExpressionError(
            f"topic expression of {len(stripped)} characters exceeds the limit of {MAX_EXPRESSION_LENGTH}")
    dialect = TopicDialect(dialect)
    paths = parse_paths(stripped, dialect, nsmap)
    used: dict[str, str] = {}
    for path in paths:
        if path.prefix is not None:
            used[path.prefix] = path.namespace
        elif path.namespace:
            used[""] = path.namespace
    return TopicExpression(
        dialect=dialect,
        text="|".join(path.text() for path in paths),
        _namespaces=tuple(sorted(used.items())),
        _paths=paths,
    )

"""Topics as plain values: the data the rest of hiem (store, fan-out, rendering) passes around.

WS-Topics 1.3 organises topics in trees: a root topic is named by a QName (the tree's topic namespace
plus an NCName) and each descendant by an NCName under its parent, so a topic is fully identified by
(namespace, path of NCNames). The TopicNamespace document (t-1.xsd TopicNamespaceType) declares such
trees; :class:`TopicNamespace` is its content as read by :mod:`hiem.wstopics.namespace_doc`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hiem.wstopics._names import is_ncname


@dataclass(frozen=True, order=True)
class TopicPath:
    """One topic: its topic namespace URI ("" for no namespace) and the names from its root down.

    ``TopicPath("urn:x", ("a", "b"))`` is topic ``b``, child of root topic ``a`` in ``urn:x``; its
    ``str()`` is the Clark-like ``{urn:x}a/b``. Every name must be an NCName (t-1.xsd TopicType/@name).
    """

    namespace: str
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple) or not self.path:
            raise ValueError("a TopicPath needs a non-empty tuple of names")
        for name in self.path:
            if not isinstance(name, str) or not is_ncname(name):
                raise ValueError(f"topic name {name!r} is not an NCName")

    @property
    def root(self) -> TopicPath:
        """The root topic of this topic's tree (itself when it is a root)."""
        return self if self.is_root else TopicPath(self.namespace, self.path[:1])

    @property
    def parent(self) -> TopicPath | None:
        """The parent topic, or None for a root topic."""
        return None if self.is_root else TopicPath(self.namespace, self.path[:-1])

    @property
    def is_root(self) -> bool:
        return len(self.path) == 1

    @property
    def name(self) -> str:
        """The topic's own NCName (the last step of its path)."""
        return self.path[-1]

    def child(self, name: str) -> TopicPath:
        """The child topic called ``name`` (it need not exist in any tree)."""
        return TopicPath(self.namespace, (*self.path, name))

    def is_ancestor_of(self, other: TopicPath) -> bool:
        """True when ``other`` lies strictly below this topic in the same tree."""
        return (
            other.namespace == self.namespace
            and len(other.path) > len(self.path)
            and other.path[: len(self.path)] == self.path
        )

    def __str__(self) -> str:
        joined = "/".join(self.path)
        return f"{{{self.namespace}}}{joined}" if self.namespace else joined


@dataclass(frozen=True)
class TopicNode:
    """A topic as declared in a TopicNamespace document (t-1.xsd TopicType).

    ``final`` is the declared ``@final`` (no child topics beyond those declared);
    ``message_types`` are the ``@messageTypes`` QNames resolved to Clark notation ``{uri}local``.
    """

    path: TopicPath
    final: bool = False
    message_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicNamespace:
    """A loaded TopicNamespace document (WS-Topics 1.3 Topic Namespaces, t-1.xsd TopicNamespaceType).

    ``nodes`` holds every topic, roots and descendants, in document order, and always lists a parent
    before its children (a topic declared with ``@parent`` is placed after the topic it extends).
    """

    target_namespace: str
    name: str | None
    final: bool
    nodes: tuple[TopicNode, ...]

    @property
    def paths(self) -> tuple[TopicPath, ...]:
        """The path of every topic, in the order of ``nodes``."""
        return tuple(node.path for node in self.nodes)

    @property
    def roots(self) -> tuple[TopicNode, ...]:
        """The root topics, in document order."""
        return tuple(node for node in self.nodes if node.path.is_root)

    def get(self, path: TopicPath) -> TopicNode | None:
        """The node declared for ``path``, or None."""
        for node in self.nodes:
            if node.path == path:
                return node
        return None

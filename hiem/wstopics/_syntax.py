"""Tokenizer and parser for WS-Topics 1.3 topic expressions (§7.1 Simple, §7.2 Concrete, §7.3 Full).

One recursive-descent parser reads the Full grammar of t-1.xsd (``FullTopicExpression``)::

    TopicPathExpression  ::= TopicPath ( '|' TopicPath )*
    TopicPath            ::= RootTopic ChildTopicExpression*
    RootTopic            ::= NamespacePrefix? ('//')? (NCName | '*')
    NamespacePrefix      ::= NCName ':'
    ChildTopicExpression ::= '/' '/'? (QName | NCName | '*' | '.')

and refuses, as it meets them, the constructs the smaller dialects leave out, so that each error can say
which dialect would have allowed it: Simple is ``RootTopic ::= QName`` only, Concrete is
``RootTopic ('/' (QName | NCName))*``. Once the text is known to be well-formed, prefixes are resolved
against the TopicExpression element's in-scope namespaces, so the result holds namespace URIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from hiem import ns
from hiem.wstopics._names import NAME_CONTINUATION_RE, NCNAME_RE, XML_WHITESPACE
from hiem.wstopics.dialects import TopicDialect
from hiem.wstopics.errors import TopicExpressionError

#: node tests that are not names; neither can be an NCName, so a plain ``str`` test is unambiguous.
ANY = "*"
SELF = "."

_FOLLOWERS = {
    TopicDialect.SIMPLE: "a Simple expression is a single QName",
    TopicDialect.CONCRETE: "a Concrete topic name can only be followed by '/' or the end",
    TopicDialect.FULL: "a step can only be followed by '/', '//', '|' or the end",
}
_SECTION = {TopicDialect.SIMPLE: "§7.1", TopicDialect.CONCRETE: "§7.2", TopicDialect.FULL: "§7.3"}


class Axis(Enum):
    """How a step is reached from the node before it: ``/`` (child) or ``//`` (descendant)."""

    CHILD = "/"
    DESCENDANT = "//"


@dataclass(frozen=True)
class Step:
    """One step of a path: an axis and a node test (an NCName, ``ANY`` or ``SELF``)."""

    axis: Axis
    test: str


@dataclass(frozen=True)
class PathPattern:
    """One ``TopicPath`` of an expression, with its namespace resolved.

    The first step starts from the (virtual) root of the namespace's topic tree: axis CHILD for
    ``p:Root``, DESCENDANT for ``p://Name``. ``prefix`` is the root's prefix as written (None when
    unprefixed); children that were written as QNames are stored by local name.
    """

    namespace: str
    prefix: str | None
    steps: tuple[Step, ...]

    def text(self) -> str:
        """The normalized text of this path: prefix on the root only, then ``/`` or ``//`` steps."""
        first, rest = self.steps[0], self.steps[1:]
        out = [f"{self.prefix}:" if self.prefix else "", "//" if first.axis is Axis.DESCENDANT else "",
               first.test]
        out.extend(step.axis.value + step.test for step in rest)
        return "".join(out)


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", ":", "/", "//", "*", ".", "|", "end"
    value: str
    pos: int  # 1-based character position in the stripped expression


def tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens; any character outside the grammar is an error naming its position."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        match = NCNAME_RE.match(text, i)
        if match:
            tokens.append(_Token("name", match.group(), i + 1))
            i = match.end()
        elif char == "/":
            run = len(text) - i - len(text[i:].lstrip("/"))
            if run > 2:
                raise TopicExpressionError(
                    f"{'/' * run!r} at position {i + 1}: a step is reached with '/' or '//', never more")
            tokens.append(_Token("/" * run, "/" * run, i + 1))
            i += run
        elif text.startswith("..", i):
            raise TopicExpressionError(f"'..' at position {i + 1}: WS-Topics has no parent step")
        elif char in ":*.|":
            tokens.append(_Token(char, char, i + 1))
            i += 1
        elif char in XML_WHITESPACE:
            raise TopicExpressionError(
                f"whitespace at position {i + 1}: a topic expression is one token (t-1.xsd), "
                "so no spaces are allowed inside it, not even around '|' or '/'")
        elif NAME_CONTINUATION_RE.match(char):
            raise TopicExpressionError(
                f"{char!r} at position {i + 1} cannot start a topic name (an NCName starts with a letter "
                "or '_')")
        else:
            raise TopicExpressionError(
                f"character {char!r} (U+{ord(char):04X}) at position {i + 1} cannot appear in a topic "
                "expression; topic names are NCNames")
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _describe(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else f"{token.value!r} at position {token.pos}"


class Parser:
    """Parses one expression of one dialect; use :func:`parse_paths`."""

    def __init__(self, text: str, dialect: TopicDialect, nsmap: Mapping[str | None, str]) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.dialect = dialect
        self.nsmap = nsmap

    # -- token helpers -------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def refuse(self, construct: str, token: _Token, allowed_in: str) -> TopicExpressionError:
        section = _SECTION[self.dialect]
        dialect = self.dialect.name.capitalize()
        return TopicExpressionError(
            f"{construct} ({_describe(token)}) is not allowed in the {dialect} dialect "
            f"(WS-Topics 1.3 {section}); {allowed_in}")

    # -- namespaces ----------------------------------------------------------------------------------
    def resolve(self, prefix: str | None, token: _Token) -> str:
        if prefix is None:
            return self.nsmap.get(None) or self.nsmap.get("") or ""
        uri = self.nsmap.get(prefix)
        if not uri and prefix == "xml":
            uri = ns.XML  # bound by definition (Namespaces in XML 1.0 §3)
        if not uri or prefix == "xmlns":
            fix = "it is reserved" if prefix == "xmlns" else f"declare it with xmlns:{prefix}"
            raise TopicExpressionError(
                f"prefix {prefix!r} is not bound to a namespace where the topic expression appears "
                f"(position {token.pos}); {fix}")
        return uri

    # -- grammar -------------------------------------------------------------------------------------
    def parse(self) -> tuple[PathPattern, ...]:
        if self.peek().kind == "end":
            raise TopicExpressionError("empty topic expression")
        raw = [self.path(None)]
        while self.peek().kind == "|":
            bar = self.take()
            if self.dialect is not TopicDialect.FULL:
                raise self.refuse("the union '|'", bar, "use the Full dialect to name several topics")
            raw.append(self.path("|"))
        token = self.peek()
        if token.kind != "end":
            raise TopicExpressionError(f"unexpected {_describe(token)}; {_FOLLOWERS[self.dialect]}")
        # Prefixes are resolved once the whole text is known to be well-formed, so a syntax error is
        # reported as such even when the expression also uses an unbound prefix.
        return tuple(self.resolve_path(*path) for path in raw)

    def resolve_path(self, prefix: str | None, prefix_token: _Token,
                     steps: list[tuple[Step, _Token | None]]) -> PathPattern:
        namespace = self.resolve(prefix, prefix_token)
        for step, qualifier in steps:
            if qualifier is None:
                continue
            uri = self.resolve(qualifier.value, qualifier)
            if uri != namespace:
                raise TopicExpressionError(
                    f"child topic '{qualifier.value}:{step.test}' (position {qualifier.pos}) is in namespace "
                    f"{uri!r} but its root topic is in {namespace!r}: a TopicNamespace document puts every "
                    "descendant in its root's namespace (t-1.xsd TopicType/@name is an NCName), so no topic "
                    "can match")
        return PathPattern(namespace, prefix, tuple(step for step, _ in steps))

    def path(self, after: str | None) -> tuple[str | None, _Token, list[tuple[Step, _Token | None]]]:
        prefix: str | None = None
        prefix_token = self.peek()
        if prefix_token.kind == "name" and self.peek(1).kind == ":":
            prefix = self.take().value
            self.take()
        axis = Axis.CHILD
        if self.peek().kind == "//":
            token = self.take()
            if self.dialect is not TopicDialect.FULL:
                raise self.refuse("the descendant step '//'", token, "only the Full dialect has '//'")
            axis = Axis.DESCENDANT
        root = self.take()
        if root.kind == "*":
            if self.dialect is not TopicDialect.FULL:
                raise self.refuse("the wildcard '*'", root, "only the Full dialect has wildcards")
        elif root.kind != "name":
            written = (f"{prefix}:" if prefix else "") + ("//" if axis is Axis.DESCENDANT else "")
            raise TopicExpressionError(_missing("root topic", root, written or after))
        if self.peek().kind == ":":
            raise TopicExpressionError(
                f"unexpected ':' at position {self.peek().pos}: a topic name is an NCName, and only the "
                "root topic may carry one 'prefix:'")
        steps: list[tuple[Step, _Token | None]] = [(Step(axis, root.value), None)]
        while self.peek().kind in ("/", "//"):
            steps.append(self.child_step())
        return prefix, prefix_token, steps

    def child_step(self) -> tuple[Step, _Token | None]:
        """One ``'/' '/'? (QName | NCName | '*' | '.')``; the prefix token of a QName comes back with it."""
        slash = self.take()
        if self.dialect is TopicDialect.SIMPLE:
            raise self.refuse("a child step '/'", slash, "the Simple dialect names one root topic; use "
                              "the Concrete dialect for a topic below a root")
        axis = Axis(slash.kind)
        if axis is Axis.DESCENDANT and self.dialect is not TopicDialect.FULL:
            raise self.refuse("the descendant step '//'", slash, "only the Full dialect has '//'")
        token = self.take()
        if token.kind in ("*", "."):
            if self.dialect is not TopicDialect.FULL:
                what = "the wildcard '*'" if token.kind == "*" else "the self step '.'"
                raise self.refuse(what, token, "only the Full dialect has '*' and '.'")
            return Step(axis, token.value), None
        if token.kind != "name":
            raise TopicExpressionError(_missing("child topic", token, slash.kind))
        if self.peek().kind != ":":
            return Step(axis, token.value), None
        self.take()
        local = self.take()
        if local.kind == "*":
            raise TopicExpressionError(
                f"'{token.value}:*' at position {token.pos}: a child step is a QName, an NCName, '*' or "
                "'.'; only the root topic may be a prefixed wildcard")
        if local.kind != "name":
            raise TopicExpressionError(_missing("child topic", local, f"{token.value}:"))
        if self.peek().kind == ":":
            raise TopicExpressionError(
                f"unexpected ':' at position {self.peek().pos}: a child topic is an NCName or one QName")
        return Step(axis, local.value), token


def _missing(what: str, token: _Token, after: str | None) -> str:
    """The message for a place where a topic name was expected but ``token`` was found."""
    if token.kind == ".":
        return (f"'.' at position {token.pos} is the self step of the Full dialect (WS-Topics 1.3 §7.3) "
                "and can only follow '/' or '//'")
    where = f"after {after!r}" if after else "at the start of a path"
    if token.kind in ("end", "|"):
        return f"a {what} name is missing {where} (found {_describe(token)})"
    return f"expected a {what} name {where}, found {_describe(token)}"


def parse_paths(text: str, dialect: TopicDialect, nsmap: Mapping[str | None, str]) -> tuple[PathPattern, ...]:
    """Parse already-stripped ``text`` in ``dialect``; raises TopicExpressionError."""
    return Parser(text, dialect, nsmap).parse()

"""Jinja2 templates (autoescaped) and the filters that show every time in UTC with its relative age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from hiem.clock import utcnow
from hiem.store.db import as_utc

NONE = "\N{EN DASH}"  # shown for a missing value


def age(value: datetime | None, now: datetime | None = None) -> str:
    """'12 s ago', '3 min ago', '2 h ago', '4 d ago' (or 'in …' for a time still ahead)."""
    if value is None:
        return ""
    seconds = ((now or utcnow()) - as_utc(value)).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            amount = f"{int(seconds // size)} {unit}"
            break
    else:
        amount = f"{int(seconds // 86400)} d"
    return f"in {amount}" if ahead else f"{amount} ago"


def utc(value: datetime | None) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else NONE


def when(value: datetime | None) -> Markup:
    """A time as shown everywhere in the console: UTC, machine-readable, and how long ago (kept fresh by JS)."""
    if value is None:
        return Markup(NONE)
    iso = as_utc(value).isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{0}">{1}</time> <span class="age" data-t="{0}">{2}</span>').format(
        iso, utc(value), age(value))


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def pretty_bytes_xml(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace")


def make_environment() -> Environment:
    env = Environment(loader=PackageLoader("hiem.ops", "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(age=age, utc=utc, seconds=seconds, xmltext=pretty_bytes_xml)
    env.globals.update(when=when)
    return env


class Renderer:
    """Renders a page whole, or only its live fragment for the page's own polling request."""

    def __init__(self) -> None:
        self.env = make_environment()

    def page(self, template: str, *, partial: bool = False, **context: Any) -> bytes:
        return self.env.get_template(template).render(partial=partial, **context).encode()

    @staticmethod
    def escape(text: str) -> str:
        return str(escape(text))

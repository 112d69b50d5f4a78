"""The README's layout section is the package's real shape: every package and module it names exists, and
every package of ``hiem`` is named there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def _named_under_hiem(block: str) -> set[str]:
    """Names in the block's ``hiem/`` part: ``  app/`` entries and the ``x.py`` modules listed."""
    inside = block.split("hiem/\n", 1)[1]
    lines = inside.splitlines()
    names: set[str] = set()
    for line in lines:
        if line and not line.startswith(" "):
            break  # the next top-level folder (deploy/, bench/, ...)
        names.update(re.findall(r"\b([a-z_]+/)(?=\s)", line))
        names.update(re.findall(r"\b([a-z_]+\.py)\b", line))
    return names


def test_everything_the_layout_names_exists() -> None:
    block = _layout_block()
    for name in _named_under_hiem(block):
        assert (ROOT / "hiem" / name.rstrip("/")).exists(), f"README names hiem/{name}, which does not exist"
    for top in re.findall(r"(?m)^([a-z_]+/)", block):
        assert (ROOT / top).is_dir(), f"README names {top}, which does not exist"


def test_every_package_of_hiem_is_in_the_layout() -> None:
    named = {name.rstrip("/") for name in _named_under_hiem(_layout_block()) if name.endswith("/")}
    packages = {path.name for path in (ROOT / "hiem").iterdir()
                if path.is_dir() and not path.name.startswith("__")}
    assert packages <= named, f"packages missing from the README's layout: {sorted(packages - named)}"

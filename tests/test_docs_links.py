"""Every link of README.md and of the pages docs/*.md leads somewhere.

A relative link, ``[text](path)`` or ``![alt](path)`` with an optional ``#anchor``, must name a file
or folder that exists, relative to the page that holds it; an anchor must be the slug of a heading
of the target page (of the page itself for ``(#anchor)``). External ``http(s)`` links are not
fetched (the tests run offline): they only have to be well formed.

GitHub's slug of a heading, the rule the anchors follow: the heading's text as rendered (no
backticks, no ``*``; a link keeps its text), lower-cased; every character that is not a letter, a
digit, an underscore, a hyphen or a space dropped; each space made a hyphen. A second heading with
the same slug gets "-1", a third "-2". So "## The comparison (the main job)" is
``#the-comparison-the-main-job`` and "## Stage 1: R-CNN" is ``#stage-1-r-cnn``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s<>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks, where a link or a heading is no link or heading."""
    lines, in_code = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: 'Stage 1: R-CNN' -> 'stage-1-r-cnn'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        if m := HEADING.match(line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """The targets of the Markdown links of a page, outside code blocks and inline code (a link's
    text may run over a line break)."""
    prose = "\n".join(INLINE_CODE.sub("", line) for line in prose_lines(text))
    return [m.group(1) for m in LINK.finditer(prose)]


def check_link(page: Path, target: str) -> str | None:
    """None when ``target`` (a link of ``page``) resolves, else what is wrong."""
    where = f"{page.relative_to(ROOT).as_posix()}: ({target})"
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        url = urlparse(target)
        if url.scheme in ("http", "https") and url.netloc and "." in url.netloc:
            return None
        return f"{where}: not a well-formed http(s) link"
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.exists():
        shown = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
        return f"{where}: no such file or folder {shown}"
    if anchor:
        if file.suffix != ".md":
            return f"{where}: an anchor into a file that is not a Markdown page"
        if anchor not in anchors(file):
            return f"{where}: no heading of {file.name} has the anchor #{anchor}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves(page):
    targets = links(page.read_text(encoding="utf-8"))
    problems = [why for t in targets if (why := check_link(page, t))]
    assert not problems, f"{len(problems)} broken link(s):\n" + "\n".join(problems)


def test_readme_links_to_every_docs_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links((ROOT / "README.md").read_text())}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md links to no {missing}: a page nobody can find from the front door"


# -- the checker itself ----------------------------------------------------------------------------

@pytest.mark.parametrize("heading, expected", [
    ("Stage 1: R-CNN", "stage-1-r-cnn"),
    ("The comparison (the main job)", "the-comparison-the-main-job"),
    ("On a GPU, on several GPUs, on several machines", "on-a-gpu-on-several-gpus-on-several-machines"),
    ("Why each generation wins: the errors it removes", "why-each-generation-wins-the-errors-it-removes"),
    ("6 · Faster R-CNN → Mask R-CNN", "6--faster-r-cnn--mask-r-cnn"),
    ("`stages.ops` and **RoIAlign**", "stagesops-and-roialign"),
    ("[Data](docs/data.md) in_full", "data-in_full"),
])
def test_slug_follows_githubs_rule(heading, expected):
    assert slug(heading) == expected


def test_a_broken_link_or_anchor_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Page A\n\n## Two words\n\n```\n## not a heading\n```\n")
    page = tmp_path / "README.md"
    page.write_text("x")
    assert check_link(page, "docs/a.md") is None
    assert check_link(page, "docs/a.md#two-words") is None
    assert check_link(page, "docs/") is None
    assert check_link(page, "https://example.org/x?y=1#z") is None
    assert "no such file" in check_link(page, "docs/b.md")
    assert "anchor #two" in check_link(page, "docs/a.md#two")
    assert "anchor #not-a-heading" in check_link(page, "docs/a.md#not-a-heading")
    assert "well-formed" in check_link(page, "https://")
    assert "well-formed" in check_link(page, "ftp://example.org/x")


def test_links_are_found_in_prose_only():
    text = ("See [a](a.md) and ![b](fig/b.png \"title\"), [`c`](c.md#x).\n"
            "`[not](code.md)`\n```\n[not](block.md)\n```\n[d [e]](d.md), [over a\nline](f.md)\n")
    assert links(text) == ["a.md", "fig/b.png", "c.md#x", "d.md", "f.md"]

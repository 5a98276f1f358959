"""The documentation holds together: every relative link in README.md, API.md, TESTING.md and
docs/*.md points at a file of the repository, and a link into a Markdown page at one of its
headings; no page cites a specification that is not in the repository."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "API.md", ROOT / "TESTING.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code blocks, where `[x](y)` and `#` lines are not links or headings."""
    return _FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings: lower case, punctuation dropped, spaces as `-`,
    and `-1`, `-2`... after a heading met before."""
    seen: Counter[str] = Counter()
    ids = set()
    for heading in _HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return ids


def links(page: Path) -> list[str]:
    return _LINK.findall(_CODE_SPAN.sub("", prose(page.read_text(encoding="utf-8"))))


def test_the_pages_are_found():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "API.md", "TESTING.md", "docs/assessment.md", "docs/configuration.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_resolve(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.is_relative_to(ROOT) or not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_no_citation_of_a_spec_outside_the_repository(page: Path):
    # The product specification lives beside the project, not in it: a reader cannot follow it.
    assert not re.search(r"\bSPEC\b", page.read_text(encoding="utf-8"))


def test_the_anchor_rules_match_github():
    page = ROOT / "API.md"
    assert {"post-assessment", "amazon-bedrock-models-bedrock", "get-v1models-get-v1modelsid"} <= anchors(
        page
    )

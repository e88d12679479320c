"""Every relative link in README.md and docs/*.md points at a file that exists, and a link
to a heading of a Markdown file (``file.md#heading``) at a heading that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def _prose(document: Path) -> str:
    return _FENCE.sub("", document.read_text(encoding="utf-8"))


def _relative_targets(document: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_CODE_SPAN.sub("", _prose(document)))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)
    ]


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(document: Path) -> set[str]:
    return {anchor(heading) for heading in _HEADING.findall(_prose(document))}


def test_anchor_follows_github() -> None:
    assert anchor("The alerting service (ingest + alerting)") == (
        "the-alerting-service-ingest--alerting"
    )
    assert anchor("The `aedfleet` command") == "the-aedfleet-command"
    assert anchor("Deployment: priorities") == "deployment-priorities"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document: Path) -> None:
    broken = []
    for target in _relative_targets(document):
        path_part, _, fragment = target.partition("#")
        linked = (document.parent / path_part) if path_part else document
        if not linked.exists() or (
            fragment and linked.suffix == ".md" and fragment not in _anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)} has broken links: {broken}"

"""Every relative link in README.md and docs/*.md points at a file or folder that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) outside code spans; the target ends at whitespace or the closing bracket.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _relative_targets(document: Path) -> list[str]:
    text = _CODE.sub("", document.read_text(encoding="utf-8"))
    return [
        target
        for target in _LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document: Path) -> None:
    missing = [
        target
        for target in _relative_targets(document)
        if not (document.parent / target.split("#", 1)[0]).exists()
    ]
    assert not missing, f"{document.relative_to(ROOT)} links to missing files: {missing}"

"""The documents say exactly what is true: the README links the threat model and
claims no more than it states, and every relative link in the README and docs/
leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_links_the_threat_model_and_overclaims_nothing() -> None:
    text = README.read_text()
    assert "(docs/threat-model.md)" in text
    for claim in ("cannot read anything", "cannot forge or read anything"):
        assert claim not in text


def test_the_threat_model_says_what_each_party_learns_and_cannot() -> None:
    text = THREAT_MODEL.read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    for party in ("broker", "escrow operator", "another receiver", "registered user", "sender"):
        assert any(party in s.lower() for s in sections), party
    for fact in (
        "consignment ids",
        "digests",
        "sizes",
        "receiver",
        "release",
        "names",
        "certificate authority",
    ):
        assert fact in text.lower(), fact


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_relative_links_lead_somewhere(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links {target}"


def test_no_file_keeps_a_merge_conflict() -> None:
    """A conflict marker left by a merge never lands (one once did, in the README)."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    marker = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".yml", ".yaml", ".json", ".txt", ""}:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        if marker.search(text):
            found.append(name)
    assert found == []

"""The lists `consign batch seal` works from: one job per file, per file and
receiver, and manifests in CSV and JSON Lines, whose malformed entries fail
alone with the line named."""

from __future__ import annotations

from pathlib import Path

import pytest

from client import AgentError
from client.agent.bulk import SealJob
from client.agent.joblist import each_file, each_file_and_receiver, read_manifest


def test_one_per_file_and_one_per_file_and_receiver(tmp_path: Path) -> None:
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    out = tmp_path / "out"
    assert each_file(files, ["bob", "carol"], out) == [
        SealJob((files[0],), ("bob", "carol"), out / "a.txt.consignment"),
        SealJob((files[1],), ("bob", "carol"), out / "b.txt.consignment"),
    ]
    jobs = each_file_and_receiver(files[:1], ["bob", "carol"], out)
    assert jobs == [
        SealJob((files[0],), ("bob",), out / "a.txt.bob.consignment"),
        SealJob((files[0],), ("carol",), out / "a.txt.carol.consignment"),
    ]


def test_csv_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "run.csv"
    manifest.write_text(
        "files,to,output\n"
        "a.txt;b.txt,bob;carol,ab.consignment\n"
        "c.txt,bob,\n"
        ",bob,\n"
        "d.txt,bob,x,extra\n"
    )
    jobs, bad = read_manifest(manifest, tmp_path / "out")
    assert jobs == [
        SealJob((tmp_path / "a.txt", tmp_path / "b.txt"), ("bob", "carol"),
                tmp_path / "ab.consignment"),
        SealJob((tmp_path / "c.txt",), ("bob",), tmp_path / "out" / "3-c.txt.consignment"),
    ]  # fmt: skip
    assert [(b.key, b.code) for b in bad] == [
        ("run.csv:4", "bad_entry"),
        ("run.csv:5", "bad_entry"),
    ]
    assert "'files' must name at least one file" in (bad[0].message or "")


def test_jsonl_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "run.jsonl"
    manifest.write_text(
        '{"files": ["a.txt"], "to": ["bob"]}\n'
        "\n"
        "{not json\n"
        '{"files": ["a.txt"], "to": []}\n'
        '{"files": ["a.txt"], "to": ["bob"], "colour": "red"}\n'
    )
    jobs, bad = read_manifest(manifest, tmp_path / "out")
    assert jobs == [
        SealJob((tmp_path / "a.txt",), ("bob",), tmp_path / "out" / "1-a.txt.consignment")
    ]
    assert [b.key for b in bad] == ["run.jsonl:3", "run.jsonl:4", "run.jsonl:5"]
    assert all(not b.ok for b in bad)


def test_a_csv_without_its_header_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "run.csv"
    manifest.write_text("a.txt,bob\n")
    with pytest.raises(AgentError, match="no header line"):
        read_manifest(manifest, tmp_path)

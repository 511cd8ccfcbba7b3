"""The lists `seal_many` works from: one consignment per file, one per file and
receiver, or a manifest file in CSV or JSON Lines.

CSV: a header line with the columns `files` and `to` (and optionally
`output`); several files or receivers in one cell are separated by `;`.
JSON Lines: one object per line, `{"files": [...], "to": [...]}` and
optionally `"output"`. Relative paths are relative to the manifest's
directory; `output` defaults to `<out>/<line>-<first file's name>.consignment`.
A malformed entry is that entry's failure (`ItemResult`, code `bad_entry`);
the others go on. Whether the files exist is checked later, for the whole run
(`seal_many` refuses a missing one before anything is sealed). This module
never seals or sends anything.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from client.agent.bulk import ItemResult, SealJob
from client.errors import AgentError

__all__ = ["each_file", "each_file_and_receiver", "read_manifest"]


def _output(out: Path, first: Path, suffix: str = "") -> Path:
    return out / f"{first.name}{suffix}.consignment"


def each_file(files: Sequence[Path], to: Sequence[str], out: Path) -> list[SealJob]:
    """One consignment per file, to every receiver."""
    return [SealJob((f,), tuple(to), _output(out, f)) for f in files]


def each_file_and_receiver(files: Sequence[Path], to: Sequence[str], out: Path) -> list[SealJob]:
    """One consignment per file and receiver (each receiver its own)."""
    return [SealJob((f,), (name,), _output(out, f, f".{name}")) for f in files for name in to]


def read_manifest(path: Path, out: Path) -> tuple[list[SealJob], list[ItemResult]]:
    """The jobs of a manifest (`.csv`, or JSON Lines for any other name), and
    a failure per malformed entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(
            f"cannot read the manifest {path}: {exc}", "give a CSV or JSON Lines file"
        ) from exc
    base = path.parent
    entries = _csv(text) if path.suffix.lower() == ".csv" else _jsonl(text)
    jobs: list[SealJob] = []
    bad: list[ItemResult] = []
    for line, entry in entries:
        key = f"{path.name}:{line}"
        if isinstance(entry, str):
            bad.append(ItemResult(key, False, code="bad_entry", message=f"line {line}: {entry}"))
            continue
        files, to, output = entry
        paths = [base / f for f in files]
        target = base / output if output else out / f"{line}-{paths[0].name}.consignment"
        jobs.append(SealJob(tuple(paths), tuple(to), target))
    return jobs, bad


_Entry = tuple[list[str], list[str], str | None] | str


def _check(files: object, to: object, output: object) -> _Entry:
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        return "'files' must name at least one file"
    if not isinstance(to, list) or not to or not all(isinstance(t, str) and t for t in to):
        return "'to' must name at least one receiver"
    if output is not None and (not isinstance(output, str) or not output):
        return "'output' must be a file name"
    return files, to, output


def _split(cell: str | None) -> list[str]:
    return [p.strip() for p in (cell or "").split(";") if p.strip()]


def _csv(text: str) -> list[tuple[int, _Entry]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"files", "to"} <= set(reader.fieldnames):
        raise AgentError(
            "the CSV manifest has no header line with the columns 'files' and 'to'",
            "start it with: files,to,output",
        )
    out: list[tuple[int, _Entry]] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            out.append((line, "more cells than the header has columns"))
            continue
        out.append(
            (line, _check(_split(row["files"]), _split(row["to"]), row.get("output") or None))
        )
    return out


def _jsonl(text: str) -> list[tuple[int, _Entry]]:
    out: list[tuple[int, _Entry]] = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            out.append((line, f"not JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict) or set(value) - {"files", "to", "output"}:
            out.append((line, "an object with 'files', 'to' and optionally 'output'"))
            continue
        out.append((line, _check(value.get("files"), value.get("to"), value.get("output"))))
    return out

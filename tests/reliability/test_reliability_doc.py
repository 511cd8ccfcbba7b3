"""docs/reliability.md says what is true: its figures are zero where they must
be, come from scenarios `bench/reliability.py` has, cover every one of them, and
reach the sizes issue 15 asks for; the limits it states are the code's."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from broker import MAX_ENVELOPE_BYTES, TransportConfig
from escrow_worker.faults import POINTS
from escrow_worker.handlers.auth import DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SKEW
from escrow_worker.state import sqlite
from escrow_worker.state.postgres import PostgresStore

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "reliability.md").read_text()
BENCH = (ROOT / "bench" / "reliability.py").read_text()


def _figures() -> list[list[str]]:
    section = DOC.split("## Figures", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def test_every_figure_is_zero_lost_zero_duplicated_and_reproducible() -> None:
    scenarios = set(re.findall(r'^    "([a-z-]+)": \(', BENCH, re.M))
    assert scenarios >= {"kill", "cut", "outage", "pg-cut", "sqlite-outage", "bad-input"}
    rows = _figures()
    assert rows, "the table of figures is missing"
    seen = set()
    tried: dict[str, int] = {}
    for row in rows:
        assert len(row) == 11, row
        lost, duplicated, dead, other = row[5:9]
        assert (lost, duplicated, dead, other) == ("0", "0", "0", "0"), row
        command = re.fullmatch(r"`python bench/reliability.py ([a-z-]+) .*--seed \d+`", row[10])
        assert command is not None, row[10]
        seen.add(command[1])
        tried[command[1]] = tried.get(command[1], 0) + int(row[2].replace(",", ""))
    assert seen == scenarios  # every scenario has its row(s)
    assert tried["bad-input"] >= 10_000
    assert tried["corrupt"] >= 10_000
    commit = re.search(r"on commit `([0-9a-f]{7,40})`", DOC)
    assert commit is not None, "the figures name the commit they were run on"


def test_the_limits_it_states_are_the_codes() -> None:
    assert timedelta(minutes=2) == DEFAULT_MAX_SKEW
    assert "2 minutes" in DOC
    assert timedelta(minutes=15) == DEFAULT_MAX_LIFETIME
    assert "15 minutes" in DOC
    assert sqlite._MAX_WAIT == 600
    assert PostgresStore.open.__kwdefaults__["max_wait"] == 600
    assert "up to 600 s" in DOC
    assert sqlite._BUSY_TIMEOUT_MS == 5000
    assert "5 s busy timeout" in DOC
    assert TransportConfig().delivery_limit == 5
    assert "5 by default" in DOC
    assert MAX_ENVELOPE_BYTES == 1 << 20
    assert "over 1 MiB" in DOC
    for point in POINTS:
        assert f"`{point}`" in DOC


def test_the_tests_it_names_exist() -> None:
    for name in re.findall(r"`(tests/[\w/]+\.py)`", DOC):
        assert (ROOT / name).is_file(), name

"""The tick engine (`escrow_worker.invoice`) on a generated log with known
counts, and the price tables and periods it refuses."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from broker.txlog import Entry, new_entry
from escrow_worker.invoice import InvoiceError, Period, Prices, count, price

NOV = Period.parse("2026-11")
#: What an item entry names its batch by (docs/log.md, "Batch items").
BATCH = {"request_id": "b1" * 16, "request_sha256": "0" * 64}


def _t(day: int, month: int = 11) -> int:
    return int(datetime(2026, month, day, 12, tzinfo=UTC).timestamp())


def _log(requests: list[tuple[int, str, str, str, dict[str, Any]]]) -> list[Entry]:
    """(time, signer, type, decision, extra data) -> request entries, chained."""
    out: list[Entry] = []
    previous = None
    for at, signer, type_, decision, extra in requests:
        data = {"signer": signer, "type": type_, "decision": decision, **extra}
        previous = new_entry(previous, "acme", "request", data, at=at)
        out.append(previous)
    return out


def test_period_bounds() -> None:
    assert (NOV.start, NOV.end) == (_t(1) - 43200, _t(1, 12) - 43200)
    assert Period.parse("2026-12").end == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    with pytest.raises(InvoiceError, match="not a period"):
        Period.parse("2026-13")


def test_counts_on_a_generated_log() -> None:
    log = _log(
        [
            (_t(20, 10), "alice", "deposit", "ok", {}),  # before: stored all 30 days
            (_t(3), "alice", "deposit", "ok", {}),  # stored from the 3rd: 28 days
            (_t(3), "alice", "deposit", "replayed", {}),  # refused: nothing
            (_t(4), "bob", "key-request", "ok", {}),
            (_t(4), "mallory", "key-request", "not_a_receiver", {}),
            (_t(5), "bob", "receipt", "ok", {}),
            (_t(6), "carol", "cosign", "ok", {}),
            # A batch: its own entry is not billable, each item it decided is.
            (_t(7), "bob", "batch", "ok", {"request_id": "b1"}),
            (_t(7), "bob", "key-request", "ok", {"batch": BATCH}),
            (_t(7), "bob", "key-request", "revoked", {"batch": BATCH}),
            (_t(7), "bob", "key-request", "ok", {"batch": BATCH}),
            (_t(9), "alice", "deposit", "ok", {"batch": BATCH}),  # stored from the 9th: 22 days
            (_t(9), "alice", "deposit", "malformed", {"batch": BATCH}),
            (_t(9), "alice", "revoke", "ok", {"batch": BATCH}),
            (_t(8), "bob", "status", "ok", {}),  # not billable
            (_t(2, 12), "alice", "deposit", "ok", {}),  # after the period
        ]
    )
    assert count(log, NOV) == {
        "alice": Counter(deposit=2, batch_item=2, storage_day=30 + 28 + 22),
        "bob": Counter(release=3, receipt=1, batch_item=2),
        "carol": Counter(cosign=1),
    }
    prices = Prices.parse(b'currency = "EUR"\n[prices]\nrelease = 0.5\nstorage_day = "0.001"\n')
    lines = price(count(log, NOV), prices)
    assert [(x.account, x.item, x.count, x.amount) for x in lines] == [
        ("alice", "deposit", 2, Decimal(0)),
        ("alice", "batch_item", 2, Decimal(0)),
        ("alice", "storage_day", 80, Decimal("0.080")),
        ("bob", "release", 3, Decimal("1.5")),
        ("bob", "receipt", 1, Decimal(0)),
        ("bob", "batch_item", 2, Decimal(0)),
        ("carol", "cosign", 1, Decimal(0)),
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (b'[prices]\nlunch = "3"\n', "unknown item 'lunch'"),
        (b'[prices]\ndeposit = "-0.01"\n', "the price of 'deposit' is negative"),
        (b'[prices]\ndeposit = "ten"\n', "the price of 'deposit' is not a number"),
        (b"[prices]\ndeposit = true\n", "the price of 'deposit' is not a number"),
        (b'[prices]\ndeposit = "NaN"\n', "the price of 'deposit' is not a number"),
        (b'tax = "20%"\n', "unknown setting 'tax'"),
        (b"[prices\n", "not valid TOML"),
    ],
)
def test_bad_price_tables_are_refused(table: bytes, message: str) -> None:
    with pytest.raises(InvoiceError, match=message) as info:
        Prices.parse(table)
    assert info.value.hint is not None

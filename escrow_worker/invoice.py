"""The tick engine: billable counts per account and period, computed from the
transaction log alone, and priced from a price table (docs/log.md,
"Invoicing").

Items, each charged to the account named:

| item | counted for each | account |
| --- | --- | --- |
| `deposit` | accepted `deposit` request in the period, alone or in a batch | the sender |
| `release` | `key-request` answered with the key part, alone or in a batch | the receiver |
| `receipt` | accepted `receipt` | the receiver who signed it |
| `cosign` | accepted `cosign` | the co-signer |
| `batch_item` | accepted batch item (a request entry with a `batch` field) | its signer |
| `storage_day` | UTC day of the period on which a deposit was held | the sender |

A deposit is held from the day it was accepted to the end of the period (the
escrow keeps every deposit). Pure: this module must never read the store; the
command hands in the entries.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final

from broker.txlog import Entry
from escrow_worker.errors import EscrowError

__all__ = [
    "COLUMNS",
    "ITEMS",
    "Decimal",
    "Invoice",
    "InvoiceError",
    "Line",
    "Period",
    "Prices",
    "count",
    "invoice",
    "price",
]

ITEMS: Final = ("deposit", "release", "receipt", "cosign", "batch_item", "storage_day")
#: The columns of an invoice's lines, in its CSV and JSON forms.
COLUMNS: Final = ("account", "item", "count", "unit_price", "amount")
_DAY: Final = 86400
_BY_TYPE: Final = {
    "deposit": "deposit",
    "key-request": "release",
    "receipt": "receipt",
    "cosign": "cosign",
}


class InvoiceError(EscrowError):
    """A period or a price table that cannot be used."""


@dataclass(frozen=True)
class Period:
    """A calendar month, UTC: [start, end) in Unix seconds."""

    name: str
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Period:
        try:
            first = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
            after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
        except ValueError:  # not a month, or 9999-12 (its end is out of range)
            raise InvoiceError(
                f"{text!r} is not a period", "give a month as YYYY-MM, e.g. 2026-11"
            ) from None
        return cls(text, int(first.timestamp()), int(after.timestamp()))


@dataclass(frozen=True)
class Prices:
    """The price of one of each item, in `currency`; items not listed cost 0."""

    currency: str
    each: Mapping[str, Decimal]

    @classmethod
    def parse(cls, data: bytes, where: str = "price table") -> Prices:
        """TOML: `currency = "EUR"` and a `[prices]` table of item = "0.10" (a
        string or a number). Unknown items and negative prices are refused."""
        hint = f'items: {", ".join(ITEMS)}; prices are numbers >= 0, e.g. deposit = "0.10"'
        try:
            value = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvoiceError(f"{where} is not valid TOML: {exc}", hint) from None
        unknown = set(value) - {"currency", "prices"}
        if unknown:
            raise InvoiceError(f"{where}: unknown setting {sorted(unknown)[0]!r}", hint)
        currency = value.get("currency", "")
        table = value.get("prices", {})
        if not isinstance(currency, str) or not isinstance(table, dict):
            raise InvoiceError(f"{where}: currency is a string and [prices] a table", hint)
        each: dict[str, Decimal] = {}
        for item, given in table.items():
            if item not in ITEMS:
                raise InvoiceError(f"{where}: unknown item {item!r}", hint)
            try:
                amount = Decimal(str(given)) if isinstance(given, str | int | float) else None
            except InvalidOperation:
                amount = None
            if amount is None or not amount.is_finite() or isinstance(given, bool):
                raise InvoiceError(f"{where}: the price of {item!r} is not a number", hint)
            if amount < 0:
                raise InvoiceError(f"{where}: the price of {item!r} is negative", hint)
            each[item] = amount
        return cls(currency, each)


def count(entries: Iterable[Entry], period: Period) -> dict[str, Counter[str]]:
    """Billable counts per account for `period`, from the log's entries (all of
    them up to the period's end: a deposit made before it is stored during it)."""
    counts: dict[str, Counter[str]] = {}

    def add(account: str, item: str, n: int = 1) -> None:
        if n > 0:
            counts.setdefault(account, Counter())[item] += n

    for entry in entries:
        if entry.kind != "request" or entry.at >= period.end:
            continue
        data = entry.data
        if data.get("decision") != "ok":
            continue
        signer = str(data.get("signer"))
        item = _BY_TYPE.get(str(data.get("type")))
        if entry.at >= period.start:
            if item is not None:
                add(signer, item)
            if "batch" in data:
                add(signer, "batch_item")
        if item == "deposit":
            first_day = max(entry.at, period.start) // _DAY
            last_day = (period.end - 1) // _DAY
            add(signer, "storage_day", last_day - first_day + 1)
    return counts


@dataclass(frozen=True)
class Line:
    account: str
    item: str
    count: int
    unit_price: Decimal
    amount: Decimal


def price(counts: Mapping[str, Counter[str]], prices: Prices) -> list[Line]:
    """One line per account and item counted, by account then item order."""
    lines = []
    for account in sorted(counts):
        for item in ITEMS:
            n = counts[account].get(item, 0)
            if n:
                unit = prices.each.get(item, Decimal(0))
                lines.append(Line(account, item, n, unit, unit * n))
    return lines


@dataclass(frozen=True)
class Invoice:
    """A period's priced lines, as `consign escrow invoice` and the console show them."""

    period: Period
    currency: str
    lines: tuple[Line, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), start=Decimal(0))

    def rows(self) -> list[dict[str, str | int]]:
        """One dict per line (`COLUMNS`; prices as decimal strings)."""
        return [
            {
                "account": line.account,
                "item": line.item,
                "count": line.count,
                "unit_price": str(line.unit_price),
                "amount": str(line.amount),
            }
            for line in self.lines
        ]

    def csv(self) -> str:
        """The lines as CSV with a header row, `\\n` line ends."""
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return out.getvalue()


def invoice(entries: Iterable[Entry], period: Period, prices: Prices) -> Invoice:
    """`count` and `price` in one: the invoice of `period` from the log's entries."""
    return Invoice(period, prices.currency, tuple(price(count(entries, period), prices)))

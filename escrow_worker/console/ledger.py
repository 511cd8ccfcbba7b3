"""What the console's books show: the transaction log's entries with its
verification status (the same check as `consign escrow log verify`,
`ca.notary.verify_log`), and the invoices of a period (the same counting as
`consign escrow invoice`, `escrow_worker.invoice`). The HTML pages render these
models and the JSON API returns them. This module must never write, and never
count or verify anything itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from pydantic import BaseModel, BeforeValidator, Field

from broker.txlog import Entry, Head, LogBroken, summary
from escrow_worker import invoice as tick
from escrow_worker.ca.notary import verify_log
from escrow_worker.ca.operator import Escrow
from escrow_worker.errors import EscrowError
from escrow_worker.state import txlog
from escrow_worker.state.base import Tx

__all__ = [
    "InvoicePage",
    "LogPage",
    "LogQuery",
    "Verification",
    "invoice",
    "invoice_page",
    "log",
    "verification",
]

_HEX = r"^[0-9a-f]*$"
_NAME = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(int(ts), UTC).isoformat()


def _blank_is_none(value: object) -> object:
    return None if value == "" else value  # an HTML form sends empty fields


def _seconds(when: datetime | None) -> int | None:
    """Unix seconds; a time without a zone is UTC."""
    if when is None:
        return None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


Moment = Annotated[datetime | None, BeforeValidator(_blank_is_none)]


class LogQuery(BaseModel):
    """Which entries to list: every filter given must match; `after` pages on."""

    consignment: str = Field("", max_length=64, pattern=_HEX, description="consignment id")
    party: str = Field("", max_length=64, pattern=_NAME, description="a party named")
    kind: str = Field("", max_length=32, pattern=r"^[a-z-]*$", description="request, event, ...")
    since: Moment = Field(None, description="from this date or time (UTC unless it says)")
    until: Moment = Field(None, description="before this date or time (UTC unless it says)")
    after: int = Field(0, ge=0, le=2**53, description="only entries after this one (paging)")
    limit: int = Field(100, ge=1, le=500)

    def filter(self) -> txlog.Filter:
        return txlog.Filter(
            consignment=self.consignment or None,
            party=self.party or None,
            since=_seconds(self.since),
            until=_seconds(self.until),
            kind=self.kind or None,
            after=self.after,
            limit=self.limit + 1,  # one more: is there a next page?
        )

    def link(self, **change: object) -> str:
        """The query string of this query with `change`, empty fields left out."""
        given = {**self.model_dump(mode="json"), **change}
        return urlencode({k: v for k, v in given.items() if v not in (None, "")})


class LogEntryView(BaseModel):
    seq: int
    at: str
    kind: str
    consignment: str | None
    parties: list[str]
    summary: str
    hash: str


class Verification(BaseModel):
    """`consign escrow log verify` over the whole log, as the page loads."""

    intact: bool
    entries: int = Field(description="entries in the log")
    verified_to: int = Field(description="entries 1 to this one are intact")
    first_bad: int | None = Field(None, description="the first entry found bad, if any")
    problem: str | None = None
    hint: str | None = None
    signed_size: int | None = Field(None, description="the latest signed head's size")
    signed_at: str | None = Field(None, description="when the latest head was signed")


class LogPage(BaseModel):
    query: LogQuery
    verification: Verification
    entries: list[LogEntryView]
    #: `after` for the next page; None when this is the last.
    next_after: int | None


def _entry(seq: int, data: bytes) -> LogEntryView:
    """An entry as stored at `seq` (its place, whatever an altered entry claims)."""
    try:
        e = Entry.decode(data)
    except ValueError:
        return LogEntryView(
            seq=seq, at="", kind="?", consignment=None, parties=[], hash="",
            summary="does not decode (see the verification)",
        )  # fmt: skip
    return LogEntryView(
        seq=seq, at=_iso(e.at) or "", kind=e.kind, consignment=e.consignment,
        parties=list(e.parties), summary=summary(e), hash=e.hash,
    )  # fmt: skip


async def verification(escrow: Escrow) -> Verification:
    async def job(tx: Tx) -> tuple[tuple[int, str] | None, Head | None]:
        latest = await txlog.latest_head(tx)
        return await txlog.head(tx), None if latest is None else latest.head

    head, signed = await escrow.store.run(job)
    known = {
        "entries": 0 if head is None else head[0],
        "signed_size": None if signed is None else signed.size,
        "signed_at": None if signed is None else _iso(signed.signed_at),
    }
    try:
        result = await verify_log(escrow.store, escrow.name, escrow.ca_certificate)
    except LogBroken as exc:
        bad = exc.seq
        return Verification(
            intact=False, verified_to=0 if bad is None else bad - 1, first_bad=bad,
            problem=exc.message, hint=exc.hint, **known,
        )  # fmt: skip
    return Verification(intact=True, verified_to=result.last, **known)


async def log(escrow: Escrow, query: LogQuery) -> LogPage:
    found = await escrow.store.run(lambda tx: txlog.find_numbered(tx, query.filter()))
    more = len(found) > query.limit
    shown = [_entry(seq, data) for seq, data in found[: query.limit]]
    return LogPage(
        query=query,
        verification=await verification(escrow),
        entries=shown,
        next_after=shown[-1].seq if more and shown else None,
    )


class InvoiceLine(BaseModel):
    account: str
    item: str
    count: int
    unit_price: str
    amount: str


class InvoicePage(BaseModel):
    period: str
    start: str
    end: str
    currency: str
    lines: list[InvoiceLine]
    total: str


async def invoice(escrow: Escrow, period: str, prices: tick.Prices, *, now: int) -> tick.Invoice:
    """The invoice of `period` (YYYY-MM; empty: the month of `now`), priced from
    `prices`; `InvoiceError` if the period is not a month."""
    month = tick.Period.parse(period or datetime.fromtimestamp(now, UTC).strftime("%Y-%m"))
    encoded = await escrow.store.run(lambda tx: txlog.requests_before(tx, month.end))
    try:
        return tick.invoice((Entry.decode(e) for e in encoded), month, prices)
    except ValueError as exc:
        raise EscrowError(
            f"the transaction log holds an entry that does not decode ({exc})",
            "see the transaction log page, or run `consign escrow log verify`",
        ) from None


def invoice_page(bill: tick.Invoice) -> InvoicePage:
    return InvoicePage(
        period=bill.period.name,
        start=_iso(bill.period.start) or "",
        end=_iso(bill.period.end) or "",
        currency=bill.currency,
        lines=[InvoiceLine.model_validate(row) for row in bill.rows()],
        total=str(bill.total),
    )

"""`consign escrow invoice --period YYYY-MM`: the tick engine's command. Counts
billable items per account from the transaction log and prices them from a
price table (`escrow_worker.invoice`, docs/log.md "Invoicing"). This module must
never count anything itself.
"""

from __future__ import annotations

from pathlib import Path

import click

from broker.console import emit, run
from broker.files import read_bytes
from broker.txlog import Entry
from escrow_worker import invoice as tick
from escrow_worker.ca.operator import open_escrow
from escrow_worker.cli.options import escrow_location
from escrow_worker.state import txlog
from escrow_worker.state.location import Location

__all__ = ["COMMANDS"]


@click.command("invoice")
@escrow_location
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to invoice (UTC).")
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Price table (TOML: currency, [prices] item = price) [default: counts only].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def invoice(
    location: Location, period: str, prices_file: Path | None, fmt: str, as_json: bool
) -> None:
    """Billable counts per account for a month, from the transaction log:
    deposits, releases, receipts, co-signatures, batch items and stored
    consignment-days, each priced from the price table."""
    month = tick.Period.parse(period)
    prices = tick.Prices("", {})
    if prices_file is not None:
        prices = tick.Prices.parse(read_bytes(prices_file, "price table"), str(prices_file))

    async def go() -> list[bytes]:
        async with open_escrow(location) as esc:
            return await esc.store.run(lambda tx: txlog.requests_before(tx, month.end))

    bill = tick.invoice((Entry.decode(e) for e in run(go())), month, prices)
    rows = bill.rows()
    if as_json or fmt == "json":
        data = {
            "period": month.name,
            "currency": prices.currency,
            "lines": rows,
            "total": str(bill.total),
        }
        emit(data, True)
    elif fmt == "csv":
        click.echo(bill.csv(), nl=False)
    else:
        text = [f"period {month.name} {prices.currency}".rstrip()]
        text.append(f"{'ACCOUNT':<20} {'ITEM':<12} {'COUNT':>8} {'PRICE':>10} {'AMOUNT':>12}")
        for r in rows:
            text.append(
                f"{r['account']:<20} {r['item']:<12} {r['count']:>8} "
                f"{r['unit_price']:>10} {r['amount']:>12}"
            )
        text.append(f"{'TOTAL':<20} {'':<12} {'':>8} {'':>10} {bill.total!s:>12}")
        emit([], False, "\n".join(text))


COMMANDS = (invoice,)

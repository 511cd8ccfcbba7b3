"""`consign escrow log verify/show/head/export`: the operator's commands on the
transaction log (docs/log.md). Thin wrappers around `ca.notary` and
`state.txlog`; this module must never hold chain logic nor take a passphrase
from an argument.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from broker.console import emit, iso, json_option, now, read_passphrase, run, say
from broker.files import write_bytes
from broker.txlog import Entry, SignedHead, summary
from escrow_worker.ca.authority import load_service_keys
from escrow_worker.ca.notary import HeadSigner, export_archive, sign_current_head, verify_log
from escrow_worker.ca.operator import Escrow, open_escrow
from escrow_worker.cli.options import (
    ESCROW_PASSPHRASE_ENV,
    escrow_location,
    escrow_passphrase_option,
)
from escrow_worker.errors import EscrowError
from escrow_worker.state import txlog
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location

__all__ = ["log", "parse_moment"]


def parse_moment(value: str, option: str) -> int:
    """Unix seconds from an ISO 8601 date or time (UTC unless it says)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date or time (e.g. 2026-11-01 or 2026-11-01T12:00:00Z)",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


async def _signer(esc: Escrow, passphrase: bytes) -> HeadSigner:
    keys = await load_service_keys(esc.keystore, passphrase)
    return HeadSigner(esc.name, keys.signing_key, keys.signing_certificate)


def _head_json(signed: SignedHead | None) -> dict[str, Any] | None:
    if signed is None:
        return None
    return {
        "size": signed.head.size,
        "hash": signed.head.hash,
        "signed_at": iso(signed.head.signed_at),
        "signer": signed.signer,
    }


@click.group("log")
def log() -> None:
    """Read, verify, sign and export the transaction log: every action of the
    escrow, hash-chained, with heads the escrow signs (docs/log.md).

    Exit codes: 0 the log is intact, 1 it is not (the first bad entry is
    named) or the command failed, 2 usage error.
    """


@log.command()
@escrow_location
@json_option
def verify(location: Location, as_json: bool) -> None:
    """Check every entry and every signed head; name the first bad entry."""

    async def go() -> tuple[Any, str]:
        async with open_escrow(location) as esc:
            return await verify_log(esc.store, esc.name, esc.ca_certificate), esc.name

    result, name = run(go())
    data = {
        "escrow": name,
        "entries": result.last,
        "head": result.head,
        "signed_size": result.signed_size,
        "unsigned_tail": result.last - (result.signed_size or 0),
    }
    emit(data, as_json)
    say(f"OK the log of {name!r} is intact: {result.last} entries")


@log.command()
@escrow_location
@click.option("--consignment", metavar="ID", help="Only entries about this consignment.")
@click.option("--party", metavar="NAME", help="Only entries naming this party.")
@click.option("--since", metavar="TIME", help="From this date or time (UTC), inclusive.")
@click.option("--until", metavar="TIME", help="Before this date or time (UTC).")
@click.option("--kind", help="Only entries of this kind (request, event, notify, ...).")
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True)
@json_option
def show(
    location: Location,
    consignment: str | None,
    party: str | None,
    since: str | None,
    until: str | None,
    kind: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Print entries, oldest first, filtered by consignment, party, time, kind."""
    where = txlog.Filter(
        consignment=consignment,
        party=party,
        since=None if since is None else parse_moment(since, "--since"),
        until=None if until is None else parse_moment(until, "--until"),
        kind=kind,
        limit=limit,
    )

    async def go() -> list[bytes]:
        async with open_escrow(location) as esc:
            return await esc.store.run(lambda tx: txlog.find(tx, where))

    entries = [Entry.decode(e) for e in run(go())]
    if as_json:
        emit([{**e.to_json(), "hash": e.hash} for e in entries], True)
        return
    lines = [
        f"{e.seq}\t{iso(e.at)}\t{e.kind}\t{e.consignment or '-'}\t{summary(e)}" for e in entries
    ]
    emit([], False, "\n".join(["SEQ\tAT\tKIND\tCONSIGNMENT\tWHAT", *lines]))


@log.command()
@escrow_location
@click.option("--sign", is_flag=True, help="Sign the current head now (needs the passphrase).")
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def head(
    location: Location, sign: bool, escrow_passphrase_file: Path | None, as_json: bool
) -> None:
    """Print the log's size, the hash of its last entry, and the latest signed
    head; with --sign, sign the current head first."""
    passphrase = (
        read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow") if sign else None
    )

    async def go() -> tuple[tuple[int, str] | None, SignedHead | None, str]:
        async with open_escrow(location) as esc:
            if passphrase is not None:
                await sign_current_head(esc.store, await _signer(esc, passphrase), now=now())

            async def job(tx: Tx) -> tuple[tuple[int, str] | None, SignedHead | None]:
                return await txlog.head(tx), await txlog.latest_head(tx)

            current, latest = await esc.store.run(job)
            return current, latest, esc.name

    current, latest, name = run(go())
    data = {
        "escrow": name,
        "size": 0 if current is None else current[0],
        "hash": None if current is None else current[1],
        "signed": _head_json(latest),
    }
    text = f"escrow: {name}\nsize: {data['size']}\nhash: {data['hash'] or '-'}\n"
    text += "signed: -" if latest is None else (
        f"signed: size {latest.head.size} at {iso(latest.head.signed_at)} by {latest.signer}"
    )  # fmt: skip
    emit(data, as_json, text)
    if sign:
        say(f"OK signed the head of {name!r} at size {data['size']}")


def _bound(value: str | None, option: str) -> tuple[int | None, int | None]:
    """(entry number, time) from --from/--to: a number is an entry, else a time."""
    if value is None:
        return None, None
    if value.isdigit():
        return int(value), None
    return None, parse_moment(value, option)


async def _seq_range(
    tx: Tx, start: tuple[int | None, int | None], end: tuple[int | None, int | None]
) -> tuple[int, int | None]:
    first = start[0] or 1
    if start[1] is not None:
        first = int(
            await tx.fetchval("SELECT min(seq) FROM log_entries WHERE at >= ?", (start[1],)) or 0
        )
    last = end[0]
    if end[1] is not None:
        last = int(
            await tx.fetchval("SELECT max(seq) FROM log_entries WHERE at < ?", (end[1],)) or 0
        )
    return first, last


@log.command("export")
@escrow_location
@click.option("--from", "from_", metavar="N|TIME", help="First entry (number) or time [1].")
@click.option("--to", metavar="N|TIME", help="Last entry (number), or entries before a time [end].")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the archive here (refused if it exists).",
)
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def export(
    location: Location,
    from_: str | None,
    to: str | None,
    out: Path,
    escrow_passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Write a notary archive: the entries in range, the signed heads over them
    (a head at the last one is signed if none is there), the escrow's CA and
    signing certificates, the parties' certificates and the CRL. Anyone checks
    it offline with `consign log verify ARCHIVE`."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")
    start, end = _bound(from_, "--from"), _bound(to, "--to")

    async def go() -> Any:
        async with open_escrow(location) as esc:
            signer = await _signer(esc, passphrase)
            first, last = await esc.store.run(lambda tx: _seq_range(tx, start, end))
            if first == 0 or last == 0:
                raise EscrowError(
                    "no entries in that time range", "see `consign escrow log show` for times"
                )
            return await export_archive(
                esc.store, signer, esc.ca_certificate, first=first, last=last, now=now()
            )

    archive = run(go())
    write_bytes(out, archive.dumps(), private=False)
    first_seq = Entry.decode(archive.entries[0]).seq
    last_seq = Entry.decode(archive.entries[-1]).seq
    data = {"archive": str(out), "escrow": archive.escrow, "first": first_seq, "last": last_seq}
    emit(data, as_json)
    say(f"OK wrote entries {first_seq}..{last_seq} of {archive.escrow!r} to {out}")


COMMANDS = (log,)

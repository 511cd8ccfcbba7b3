"""`consign log verify ARCHIVE`: check a notary archive of an escrow's
transaction log offline, without the escrow (`broker.notary`, docs/log.md).
This module must never contact an escrow: the archive and the CA the user
trusts are all it reads.
"""

from __future__ import annotations

from pathlib import Path

import click

from broker.console import emit, iso, json_option, say
from broker.files import read_bytes
from broker.notary import Archive, verify_archive
from broker.pki.profile import fingerprint, load_certificate
from broker.txlog import Entry

__all__ = ["log"]

#: Archives larger than this are refused before parsing.
MAX_ARCHIVE_BYTES = 1 << 30


@click.group("log")
def log() -> None:
    """Check an escrow's notary archives (exported with `consign escrow log export`)."""


@log.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The escrow CA certificate (PEM) you trust: an archive of any other escrow fails.",
)
@click.option("--escrow", "escrow_name", metavar="NAME", help="The escrow it must come from.")
@json_option
def verify(archive: Path, ca_file: Path | None, escrow_name: str | None, as_json: bool) -> None:
    """Check ARCHIVE on its own: every entry's hash chain, the escrow's signed
    heads (the last one covering the last entry) and the certificates that
    signed them; name the first bad entry (exit 1)."""
    parsed = Archive.loads(read_bytes(archive, "notary archive", limit=MAX_ARCHIVE_BYTES))
    ca = None
    if ca_file is not None:
        ca = load_certificate(read_bytes(ca_file, "CA certificate", limit=1 << 20))
    result = verify_archive(parsed, ca=ca, escrow=escrow_name)
    first = Entry.decode(parsed.entries[0])
    last = Entry.decode(parsed.entries[-1])
    data = {
        "archive": str(archive),
        "escrow": parsed.escrow,
        "ca_fingerprint": fingerprint(parsed.ca),
        "first": result.first,
        "last": result.last,
        "from": iso(first.at),
        "to": iso(last.at),
        "head": result.head,
        "ca_pinned": ca is not None,
    }
    emit(data, as_json)
    say(f"OK entries {result.first}..{result.last} of {parsed.escrow!r} are intact")
    if ca is None:
        say("note: no --ca given: compare ca_fingerprint with the escrow's (consign escrow info)")

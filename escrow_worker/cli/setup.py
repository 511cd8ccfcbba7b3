"""`consign escrow init`, `register` and `sign-csr`: setting up an escrow and
registering its users (both ways: the operator makes the keys, or certifies a
user's request).

Thin wrappers around `ca.operator`: parse options, get passphrases, call, print.
This module must never hold PKI logic, never take a passphrase from an argument,
and never catch errors (the root group reports them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from broker.console import (
    IDENTITY_PASSPHRASE_ENV,
    emit,
    iso,
    json_option,
    now,
    read_passphrase,
    run,
    say,
)
from broker.files import read_bytes, write_bytes
from broker.pki.bundle import CertificateBundle
from broker.pki.csr import parse_csr
from broker.pki.identity import Identity, dump_identity
from broker.pki.profile import fingerprint
from escrow_worker.ca.authority import load_ca
from escrow_worker.ca.operator import (
    DEFAULT_CA_DAYS,
    DEFAULT_CRL_DAYS,
    DEFAULT_DAYS,
    init_escrow,
    open_escrow,
    register_user,
    sign_request,
)
from escrow_worker.cli.options import (
    ESCROW_PASSPHRASE_ENV,
    F,
    escrow_location,
    escrow_passphrase_option,
)
from escrow_worker.state.location import Location


def _days_option(default: int | None, what: str) -> Callable[[F], F]:
    return click.option(
        "--days",
        type=click.IntRange(min=1, max=36500),
        default=default,
        help=f"Validity of the {what} in days.",
        show_default=default is not None,
    )


_groups_option = click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Group of the user, for the trust policy (repeatable).",
)


@click.command()
@escrow_location
@click.option("--name", default="escrow", show_default=True, help="The escrow's name (audience).")
@click.option(
    "--ca-days",
    type=click.IntRange(min=1, max=36500),
    default=DEFAULT_CA_DAYS,
    show_default=True,
    help="Validity of the CA certificate in days.",
)
@_days_option(DEFAULT_DAYS, "certificates issued (default for register/sign-csr)")
@click.option(
    "--crl-days",
    type=click.IntRange(min=1, max=3650),
    default=DEFAULT_CRL_DAYS,
    show_default=True,
    help="How long each published CRL stays current.",
)
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def init(
    location: Location,
    name: str,
    ca_days: int,
    days: int,
    crl_days: int,
    escrow_passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Create a new escrow in --escrow-dir (SQLite) or in the --db database
    (PostgreSQL): the CA key and certificate, the escrow's own signing and
    encryption keys and certificates, the database and the first CRL."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")
    say(f"creating escrow {name!r} in {location.describe()} ...")
    certs = run(
        init_escrow(
            location, name, passphrase, now=now(), ca_days=ca_days, days=days, crl_days=crl_days
        )
    )
    emit(
        {
            "name": certs.name,
            "escrow_dir": None if location.directory is None else str(location.directory),
            "database": location.describe() if location.uses_database_server else None,
            "ca_fingerprint": fingerprint(certs.ca),
            "signing_fingerprint": fingerprint(certs.signing),
            "encryption_fingerprint": fingerprint(certs.encryption),
            "ca_not_after": iso(certs.ca.not_valid_after_utc),
        },
        as_json,
    )
    say(f"OK escrow {name!r} initialised; give users ca.pem's fingerprint to check")


@click.command()
@escrow_location
@click.argument("name")
@_groups_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Identity file to write [default: ./NAME.identity].",
)
@_days_option(None, "certificates [default: as set at init]")
@click.option(
    "--passphrase-file",
    "--identity-passphrase-file",
    "identity_passphrase_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the new identity file's passphrase [else env {IDENTITY_PASSPHRASE_ENV}].",
)
@escrow_passphrase_option("--escrow-passphrase-file")
@json_option
def register(
    location: Location,
    name: str,
    groups: tuple[str, ...],
    out: Path | None,
    days: int | None,
    identity_passphrase_file: Path | None,
    escrow_passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Register NAME: generate its signing and encryption keys, issue their
    certificates, and write a passphrase-protected identity file (keys,
    certificates and the CA certificate) to hand to the user."""
    out = out if out is not None else Path(f"{name}.identity")
    identity_passphrase = read_passphrase(
        identity_passphrase_file, IDENTITY_PASSPHRASE_ENV, "identity file"
    )
    escrow_passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")

    def save(identity: Identity) -> None:
        write_bytes(out, dump_identity(identity, identity_passphrase), private=True)

    async def go() -> Identity:
        async with open_escrow(location) as esc:
            ca = await load_ca(esc, escrow_passphrase)
            return await register_user(
                esc, ca, name, groups=groups, now=now(), save=save, days=days
            )

    identity = run(go())
    emit(
        {
            "name": identity.name,
            "identity_file": str(out),
            "groups": sorted(set(groups)),
            "signing_fingerprint": identity.signer,
            "encryption_fingerprint": fingerprint(identity.encryption_certificate),
            "not_after": iso(identity.signing_certificate.not_valid_after_utc),
        },
        as_json,
    )
    say(f"OK registered {name!r}; hand {out} to the user and the passphrase separately")


@click.command("sign-csr")
@escrow_location
@click.argument("csr_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Refuse unless the request is for this name.")
@_groups_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the certificate bundle here [default: stdout].",
)
@_days_option(None, "certificates [default: as set at init]")
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def sign_csr(
    location: Location,
    csr_file: Path,
    name: str | None,
    groups: tuple[str, ...],
    out: Path | None,
    days: int | None,
    escrow_passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Register a user from its certificate request FILE (`consign id create`):
    the private keys never leave the user. Writes a PEM bundle (signing and
    encryption certificates, CA certificate, current CRL) for `consign id import`."""
    request = parse_csr(read_bytes(csr_file, "certificate request"))
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")

    def save(bundle: CertificateBundle) -> None:
        if out is not None:  # inside the transaction: a failed write certifies nothing
            write_bytes(out, bundle.to_pem(), private=False)

    async def go() -> CertificateBundle:
        async with open_escrow(location) as esc:
            ca = await load_ca(esc, passphrase)
            return await sign_request(
                esc,
                ca,
                request,
                groups=groups,
                now=now(),
                days=days,
                expected_name=name,
                save=save,
            )

    bundle = run(go())
    pem = bundle.to_pem()
    summary = {
        "name": request.name,
        "groups": sorted(set(groups)),
        "signing_fingerprint": fingerprint(bundle.signing),
        "encryption_fingerprint": fingerprint(bundle.encryption),
        "ca_fingerprint": fingerprint(bundle.ca),
        "not_after": iso(bundle.signing.not_valid_after_utc),
        "bundle_file": None if out is None else str(out),
    }
    if as_json:
        emit({**summary, "bundle": pem.decode("ascii")}, True)
    elif out is None:
        click.echo(pem.decode("ascii"), nl=False)
    else:
        emit(summary, False)
    say(f"OK certified {request.name!r}; the user runs `consign id import` on the bundle")


COMMANDS = (init, register, sign_csr)

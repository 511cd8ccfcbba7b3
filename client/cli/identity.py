"""`consign id ...`: a user's own identity: create keys and a certificate request,
import what the operator signed (or the identity file it wrote), show it (or
export its certificates in PEM, `consign id show --pem`).

Thin wrappers around `client.IdentityHome`. The identity passphrase comes from
CONSIGN_IDENTITY_PASSPHRASE or --passphrase-file, never from an argument. This
module must never print a private key.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.console import (
    IDENTITY_PASSPHRASE_ENV,
    emit,
    iso,
    json_option,
    now,
    read_passphrase,
    say,
)
from broker.files import read_bytes
from broker.pki.identity import Identity, IdentityKeys, load_identity_bytes
from broker.pki.profile import fingerprint
from client.cli import options
from client.cli.options import passphrase_option
from client.errors import IdentityError, _as_client_errors
from client.home import IdentityHome

home_option = options.home_option("identities")


def _passphrase(path: Path | None) -> bytes:
    return read_passphrase(path, IDENTITY_PASSPHRASE_ENV, "identity")


def _cert(cert: x509.Certificate) -> dict[str, object]:
    return {
        "fingerprint": fingerprint(cert),
        "serial": format(cert.serial_number, "x"),
        "not_before": iso(cert.not_valid_before_utc),
        "not_after": iso(cert.not_valid_after_utc),
    }


def describe(identity: Identity | IdentityKeys) -> dict[str, object]:
    if isinstance(identity, Identity):
        return {
            "name": identity.name,
            "state": "complete",
            "signing": _cert(identity.signing_certificate),
            "encryption": _cert(identity.encryption_certificate),
            "ca": {
                "subject": identity.ca_certificate.subject.rfc4514_string(),
                **_cert(identity.ca_certificate),
            },
        }
    return {
        "name": identity.name,
        "state": "pending (no certificates yet)",
        "signing": None,
        "encryption": None,
        "ca": None,
    }


def _text(data: dict[str, object]) -> str:
    lines = [f"name: {data['name']}", f"state: {data['state']}"]
    for role in ("signing", "encryption", "ca"):
        cert = data[role]
        if isinstance(cert, dict):
            lines.append(
                f"{role}: {cert['fingerprint']}  valid {cert['not_before']} .. {cert['not_after']}"
            )
    return "\n".join(lines)


@click.group("id")
def identity() -> None:
    """Your identity: signing and encryption keys certified by the escrow.

    Either the operator registers you and hands you an identity file
    (`consign id import FILE`), or you `consign id create NAME`, send NAME.csr
    to the operator, and `consign id import` the bundle it returns: then your
    private keys never leave your machine.
    """


@identity.command()
@home_option
@click.argument("name")
@passphrase_option
@json_option
def create(home: Path, name: str, passphrase_file: Path | None, as_json: bool) -> None:
    """Generate keys for NAME (sealed under your passphrase in --home) and a
    certificate request NAME.csr to send to the escrow operator."""
    created = IdentityHome(home).create(name, _passphrase(passphrase_file))
    emit(
        {
            "name": created.name,
            "identity_file": str(created.identity_path),
            "request_file": str(created.request_path),
        },
        as_json,
    )
    say(
        f"OK keys created; send {created.request_path} to the escrow operator, then "
        "run `consign id import BUNDLE`"
    )


@identity.command("import")
@home_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--ca-fingerprint",
    metavar="SHA256",
    help="Refuse unless the CA certificate has this fingerprint (from the operator).",
)
@passphrase_option
@json_option
def import_(
    home: Path, file: Path, ca_fingerprint: str | None, passphrase_file: Path | None, as_json: bool
) -> None:
    """Store what the operator gave you: the certificate bundle from `consign
    escrow sign-csr` (checked against your keys) or an identity file from
    `consign escrow register` (copied into --home)."""
    data = read_bytes(file, "file to import")
    result = IdentityHome(home).import_file(
        data, _passphrase(passphrase_file), now=now(), ca_fingerprint=ca_fingerprint
    )
    info = describe(result)
    emit(info, as_json, _text(info))
    say(f"OK identity {result.name!r} is ready; compare the CA fingerprint with the operator's")


#: What `consign id show --pem --cert` prints; all of them by default, in this order.
_ROLES = ("signing", "encryption", "ca")


def _pem(identity: Identity | IdentityKeys, roles: tuple[str, ...]) -> str:
    if not isinstance(identity, Identity):
        raise IdentityError(
            "inconsistent",
            f"identity {identity.name!r} has no certificates yet",
            "send its certificate request to the operator, then `consign id import BUNDLE`",
        )
    certs = {
        "signing": identity.signing_certificate,
        "encryption": identity.encryption_certificate,
        "ca": identity.ca_certificate,
    }
    return "".join(certs[r].public_bytes(Encoding.PEM).decode("ascii") for r in roles)


@identity.command()
@home_option
@click.argument("name", required=False)
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Show this identity file instead of one in --home.",
)
@click.option(
    "--pem",
    is_flag=True,
    help="Print the certificates in PEM instead (signing, encryption, then the CA's), "
    "for other tools: `openssl verify -CAfile ca.pem signing.pem` accepts them.",
)
@click.option(
    "--cert",
    "roles",
    type=click.Choice(_ROLES),
    multiple=True,
    help="With --pem: only this certificate (repeatable).",
)
@passphrase_option
@json_option
def show(
    home: Path,
    name: str | None,
    file: Path | None,
    pem: bool,
    roles: tuple[str, ...],
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Show an identity (NAME in --home, the only one there, or --file): name,
    state, certificate fingerprints and validity; or, with --pem, its
    certificates. Never shows private keys."""
    if pem and as_json:
        raise click.UsageError("--pem and --json do not mix: PEM is the data --pem prints")
    if roles and not pem:
        raise click.UsageError("--cert chooses what --pem prints: give --pem too")
    passphrase = _passphrase(passphrase_file)
    if file is not None:
        with _as_client_errors():
            loaded = load_identity_bytes(read_bytes(file, "identity file"), passphrase)
    else:
        store = IdentityHome(home)
        loaded = store.load(store.resolve(name), passphrase)
    if pem:
        click.echo(_pem(loaded, roles or _ROLES), nl=False)
        return
    info = describe(loaded)
    emit(info, as_json, _text(info))

"""`consign escrow revoke/users/crl/info`: the operator's directory commands.

Thin wrappers around `ca.operator` and `ca.directory`; the group in `cli.py` adds
them. This module must never hold PKI logic nor take a passphrase from an
argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.console import emit, iso, json_option, now, read_passphrase, run, say
from broker.files import write_bytes
from broker.pki.profile import Role, fingerprint, to_pem
from escrow_worker.ca import directory
from escrow_worker.ca.authority import load_ca
from escrow_worker.ca.operator import open_escrow, publish_crl, revoke_user
from escrow_worker.cli.options import (
    ESCROW_PASSPHRASE_ENV,
    escrow_location,
    escrow_passphrase_option,
)
from escrow_worker.errors import EscrowError
from escrow_worker.state.location import Location


@click.command()
@escrow_location
@click.argument("name")
@click.option(
    "--reason",
    default="unspecified",
    show_default=True,
    type=click.Choice(["unspecified", "key-compromise", "superseded", "cessation-of-operation"]),
    help="Why (kept in the directory).",
)
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def revoke(
    location: Location, name: str, reason: str, escrow_passphrase_file: Path | None, as_json: bool
) -> None:
    """Revoke every certificate of NAME and publish a new CRL at once; every
    later check refuses them."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")

    async def go() -> list[directory.CertificateRecord]:
        async with open_escrow(location) as esc:
            ca = await load_ca(esc, passphrase)
            return await revoke_user(esc, ca, name, now=now(), reason=reason)

    revoked = run(go())
    emit({"name": name, "revoked": [c.fingerprint for c in revoked], "reason": reason}, as_json)
    say(f"OK revoked {name!r} ({len(revoked)} certificates); new CRL published")


@click.command()
@escrow_location
@json_option
def users(location: Location, as_json: bool) -> None:
    """List every registered party with its groups, state and certificates."""

    async def go() -> list[directory.UserRecord]:
        async with open_escrow(location) as esc:
            return await esc.store.run(directory.list_users)

    records = run(go())
    data = [
        {
            "name": u.name,
            "kind": u.kind,
            "groups": list(u.groups),
            "revoked_at": iso(u.revoked_at),
            "certificates": [
                {
                    "role": c.role.value,
                    "fingerprint": c.fingerprint,
                    "not_after": iso(c.not_after),
                    "revoked_at": iso(c.revoked_at),
                }
                for c in u.certificates
            ],
        }
        for u in records
    ]
    lines = [
        f"{u.name}\t{u.kind}\t{'revoked' if u.revoked_at else 'active'}\t"
        f"{','.join(u.groups) or '-'}"
        for u in records
    ]
    emit(data, as_json, "\n".join(["NAME\tKIND\tSTATE\tGROUPS", *lines]))


@click.command()
@escrow_location
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write ca.pem, NAME-signing.pem, NAME-encryption.pem and crl.pem into this "
    "directory instead of printing the PEM on stdout.",
)
@json_option
def certificates(location: Location, name: str, out: Path | None, as_json: bool) -> None:
    """Export NAME's current signing and encryption certificates, the CA
    certificate and the current CRL in PEM, for other tools: for example
    `openssl verify -CAfile ca.pem -CRLfile crl.pem -crl_check NAME-signing.pem`."""

    async def go() -> tuple[directory.UserRecord | None, x509.CertificateRevocationList, bytes]:
        async with open_escrow(location) as esc:
            user = await esc.store.run(lambda tx: directory.get_user(tx, name))
            crl = await esc.store.run(directory.current_crl)
            return user, crl, to_pem(esc.ca_certificate).encode()

    user, crl, ca_pem = run(go())
    moment = now()
    certs = () if user is None else user.certificates
    signing = directory.select_current(certs, Role.SIGNING, moment)
    encryption = directory.select_current(certs, Role.ENCRYPTION, moment)
    if signing is None or encryption is None:
        raise EscrowError(
            f"{name!r} has no current certificates here",
            "see `consign escrow users` for who is registered and whether revoked",
        )
    files = {
        "ca.pem": ca_pem,
        f"{name}-signing.pem": to_pem(signing.certificate).encode(),
        f"{name}-encryption.pem": to_pem(encryption.certificate).encode(),
        "crl.pem": crl.public_bytes(serialization.Encoding.PEM),
    }
    if out is not None:
        for file_name, content in files.items():
            write_bytes(out / file_name, content, private=False)
    data = {
        "name": name,
        "files": sorted(str(out / f) for f in files) if out is not None else None,
        **{k.removesuffix(".pem").replace(f"{name}-", ""): v.decode() for k, v in files.items()},
    }
    if as_json:
        emit(data, True)
    elif out is None:
        click.echo(b"".join(files.values()).decode(), nl=False)
    else:
        say(f"OK wrote {', '.join(files)} into {out}")


@click.command()
@escrow_location
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the CRL (PEM) here [default: stdout].",
)
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def crl(
    location: Location, out: Path | None, escrow_passphrase_file: Path | None, as_json: bool
) -> None:
    """Sign and write a fresh CRL (new this/next update). Run it more often than
    --crl-days, or clients refuse every certificate as the CRL goes stale."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")

    async def go() -> Any:
        async with open_escrow(location) as esc:
            return await publish_crl(esc, await load_ca(esc, passphrase), now=now())

    fresh = run(go())
    pem = fresh.public_bytes(serialization.Encoding.PEM)
    if out is not None:
        write_bytes(out, pem, private=False, overwrite=True)
    summary = {
        "crl_file": None if out is None else str(out),
        "revoked": len(list(fresh)),
        "next_update": iso(fresh.next_update_utc),
    }
    if as_json:
        emit({**summary, "crl": pem.decode("ascii")}, True)
    elif out is None:
        click.echo(pem.decode("ascii"), nl=False)
    else:
        emit(summary, False)
    say(f"OK CRL published, current until {summary['next_update']}")


@click.command()
@escrow_location
@json_option
def info(location: Location, as_json: bool) -> None:
    """Show the escrow's name, the CA fingerprint users should pin, and the
    state of the CRL. Needs no passphrase."""

    async def go() -> dict[str, Any]:
        async with open_escrow(location) as esc:
            current = await esc.store.run(directory.current_crl)
            me = await esc.store.run(lambda tx: directory.get_user(tx, esc.name))
            assert me is not None
            certs = {c.role.value: c.fingerprint for c in me.certificates if c.revoked_at is None}
            return {
                "name": esc.name,
                "ca_fingerprint": fingerprint(esc.ca_certificate),
                "ca_not_after": iso(esc.ca_certificate.not_valid_after_utc),
                "signing_fingerprint": certs.get("signing"),
                "encryption_fingerprint": certs.get("encryption"),
                "crl_next_update": iso(current.next_update_utc),
                "crl_revoked": len(list(current)),
            }

    emit(run(go()), as_json)


COMMANDS = (revoke, users, certificates, crl, info)

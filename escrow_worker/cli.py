"""`consign escrow ...`: the operator's commands for the escrow's PKI.

Thin wrappers around `_operator`, `_directory` and `_policy`: parse options, get
passphrases, call, print. This module must never hold PKI logic, never take a
passphrase from an argument, and never catch anything but click's own flow (the
root group reports EscrowError).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives import serialization

from escrow_worker import _directory as directory
from escrow_worker._bundle import CertificateBundle
from escrow_worker._ca import load_ca
from escrow_worker._cli_policy import policy
from escrow_worker._cliutil import (
    ESCROW_PASSPHRASE_ENV,
    IDENTITY_PASSPHRASE_ENV,
    emit,
    iso,
    json_option,
    now,
    read_passphrase,
    run,
    status,
)
from escrow_worker._csr import parse_csr
from escrow_worker._files import read_bytes, write_bytes
from escrow_worker._identity import Identity, dump_identity
from escrow_worker._operator import (
    DEFAULT_CA_DAYS,
    DEFAULT_CRL_DAYS,
    DEFAULT_DAYS,
    init_escrow,
    open_escrow,
    publish_crl,
    register_user,
    revoke_user,
    sign_request,
)
from escrow_worker._profile import fingerprint

F = TypeVar("F", bound=Callable[..., Any])

escrow_dir_option = click.option(
    "--escrow-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CONSIGN_ESCROW_DIR",
    required=True,
    help="Escrow data directory [env CONSIGN_ESCROW_DIR].",
)


def escrow_passphrase_option(*names: str) -> Callable[[F], F]:
    return click.option(
        *names,
        "escrow_passphrase_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"File holding the escrow passphrase [else env {ESCROW_PASSPHRASE_ENV}].",
    )


def _days_option(default: int | None, what: str) -> Callable[[F], F]:
    return click.option(
        "--days",
        type=click.IntRange(min=1, max=36500),
        default=default,
        help=f"Validity of the {what} in days.",
        show_default=default is not None,
    )


@click.group("escrow")
def escrow() -> None:
    """Operate an escrow: its certificate authority, directory and trust policy.

    Private keys are sealed under the escrow passphrase, read from
    CONSIGN_ESCROW_PASSPHRASE or a passphrase file, never from the command line.
    """


@escrow.command()
@escrow_dir_option
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
    escrow_dir: Path,
    name: str,
    ca_days: int,
    days: int,
    crl_days: int,
    escrow_passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Create a new escrow in --escrow-dir: the CA key and certificate, the
    escrow's own signing and encryption keys and certificates, the database and
    the first CRL."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")
    status(f"creating escrow {name!r} in {escrow_dir} ...")
    certs = run(
        init_escrow(
            escrow_dir, name, passphrase, now=now(), ca_days=ca_days, days=days, crl_days=crl_days
        )
    )
    emit(
        {
            "name": certs.name,
            "escrow_dir": str(escrow_dir),
            "ca_fingerprint": fingerprint(certs.ca),
            "signing_fingerprint": fingerprint(certs.signing),
            "encryption_fingerprint": fingerprint(certs.encryption),
            "ca_not_after": iso(certs.ca.not_valid_after_utc),
        },
        as_json,
    )
    status(f"OK escrow {name!r} initialised; give users ca.pem's fingerprint to check")


@escrow.command()
@escrow_dir_option
@click.argument("name")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Group of the user, for the trust policy (repeatable).",
)
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
    escrow_dir: Path,
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
        async with open_escrow(escrow_dir) as esc:
            ca = load_ca(escrow_dir, escrow_passphrase)
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
    status(f"OK registered {name!r}; hand {out} to the user and the passphrase separately")


@escrow.command("sign-csr")
@escrow_dir_option
@click.argument("csr_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Refuse unless the request is for this name.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Group of the user, for the trust policy (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the certificate bundle here [default: stdout].",
)
@_days_option(None, "certificates [default: as set at init]")
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def sign_csr(
    escrow_dir: Path,
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
        async with open_escrow(escrow_dir) as esc:
            ca = load_ca(escrow_dir, passphrase)
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
    status(f"OK certified {request.name!r}; the user runs `consign id import` on the bundle")


@escrow.command()
@escrow_dir_option
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
    escrow_dir: Path, name: str, reason: str, escrow_passphrase_file: Path | None, as_json: bool
) -> None:
    """Revoke every certificate of NAME and publish a new CRL at once; every
    later check refuses them."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")

    async def go() -> list[directory.CertificateRecord]:
        async with open_escrow(escrow_dir) as esc:
            ca = load_ca(escrow_dir, passphrase)
            return await revoke_user(esc, ca, name, now=now(), reason=reason)

    revoked = run(go())
    emit({"name": name, "revoked": [c.fingerprint for c in revoked], "reason": reason}, as_json)
    status(f"OK revoked {name!r} ({len(revoked)} certificates); new CRL published")


@escrow.command()
@escrow_dir_option
@json_option
def users(escrow_dir: Path, as_json: bool) -> None:
    """List every registered party with its groups, state and certificates."""

    async def go() -> list[directory.UserRecord]:
        async with open_escrow(escrow_dir) as esc:
            return await directory.list_users(esc.conn)

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


@escrow.command()
@escrow_dir_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the CRL (PEM) here [default: stdout].",
)
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def crl(
    escrow_dir: Path, out: Path | None, escrow_passphrase_file: Path | None, as_json: bool
) -> None:
    """Sign and write a fresh CRL (new this/next update). Run it more often than
    --crl-days, or clients refuse every certificate as the CRL goes stale."""
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")

    async def go() -> Any:
        async with open_escrow(escrow_dir) as esc:
            return await publish_crl(esc, load_ca(escrow_dir, passphrase), now=now())

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
    status(f"OK CRL published, current until {summary['next_update']}")


@escrow.command()
@escrow_dir_option
@json_option
def info(escrow_dir: Path, as_json: bool) -> None:
    """Show the escrow's name, the CA fingerprint users should pin, and the
    state of the CRL. Needs no passphrase."""

    async def go() -> dict[str, Any]:
        async with open_escrow(escrow_dir) as esc:
            current = await directory.current_crl(esc.conn)
            me = await directory.get_user(esc.conn, esc.name)
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


escrow.add_command(policy)

__all__ = [
    "ESCROW_PASSPHRASE_ENV",
    "IDENTITY_PASSPHRASE_ENV",
    "emit",
    "escrow",
    "iso",
    "json_option",
    "now",
    "read_passphrase",
    "status",
]

"""`consign escrow console` (serve the operators' web console over HTTPS) and
`consign escrow operator` (let a registered user into it). Thin wrappers around
`escrow_worker.console`; this module must never take a passphrase from an
argument.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from cryptography import x509

from broker import BrokerSettings
from broker.console import emit, iso, json_option, now, read_passphrase, run, say
from broker.files import read_bytes, write_bytes
from broker.pki.profile import fingerprint, to_pem
from escrow_worker.ca.authority import load_ca
from escrow_worker.ca.operator import open_escrow
from escrow_worker.cli.options import (
    ESCROW_PASSPHRASE_ENV,
    escrow_location,
    escrow_passphrase_option,
)
from escrow_worker.cli.worker import amqp_url_option
from escrow_worker.console.operators import DEFAULT_LOG_N, add_operator, hash_passphrase
from escrow_worker.console.queues import BrokerProbe
from escrow_worker.console.tls import (
    issue_operator_certificate,
    issue_server_certificate,
    operator_pkcs12,
    private_pem,
)
from escrow_worker.errors import EscrowError
from escrow_worker.invoice import Prices
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location

# The name of an environment variable, not a secret.
OPERATOR_PASSPHRASE_ENV = "CONSIGN_OPERATOR_PASSPHRASE"  # noqa: S105


@click.command("console")
@escrow_location
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@amqp_url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Host name or address the console is reached by, for its certificate "
    "[default: localhost and 127.0.0.1]. Repeatable.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve this certificate chain (PEM) instead of one the escrow CA issues.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key of --tls-cert (PEM, unencrypted; keep it 0600).",
)
@click.option(
    "--session-minutes",
    type=click.IntRange(1, 24 * 60),
    default=30,
    show_default=True,
    help="A login lasts this long, then the operator logs in again.",
)
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Price table for the invoices page (TOML, as `consign escrow invoice --prices`) "
    "[default: counts only].",
)
def console(
    location: Location,
    escrow_passphrase_file: Path | None,
    amqp_url: str | None,
    host: str,
    port: int,
    names: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    session_minutes: int,
    prices_file: Path | None,
) -> None:
    """Serve the operators' web console over HTTPS on the escrow's store (the
    same rights as these commands). Operators log in with the client
    certificate `consign escrow operator --p12` wrote, or with their console
    passphrase. With a broker URL (--amqp-url or CONSIGN_AMQP_URL, and
    CONSIGN_QUEUE_PREFIX) the overview shows the work queue and dead letters.
    Stops on SIGINT or SIGTERM."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    prices = None
    if prices_file is not None:
        prices = Prices.parse(read_bytes(prices_file, "price table"), str(prices_file))
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")
    settings = BrokerSettings.from_env()
    url = amqp_url or settings.url
    probe = None
    if url and not url.startswith("memory:"):
        probe = BrokerProbe(url, settings.transport_config())
    own = None
    if tls_cert is not None and tls_key is not None:
        own = read_bytes(tls_cert, "TLS certificate"), read_bytes(tls_key, "TLS key")
    run(
        _serve(
            location,
            passphrase,
            host,
            port,
            names or ("localhost", "127.0.0.1"),
            own,
            session_minutes * 60,
            probe,
            prices,
        )
    )
    say("OK console stopped")


async def _serve(
    location: Location,
    passphrase: bytes,
    host: str,
    port: int,
    names: tuple[str, ...],
    own: tuple[bytes, bytes] | None,
    session_seconds: int,
    probe: BrokerProbe | None,
    prices: Prices | None,
) -> None:
    # The web framework loads only for this command.
    from escrow_worker.console.app import create_app
    from escrow_worker.console.server import TlsFiles, make_server, open_console

    async with open_console(location, passphrase) as console_:
        ca_pem = to_pem(console_.escrow.ca_certificate).encode("ascii")
        if own is None:
            key, cert = issue_server_certificate(console_.ca, names, now=now())
            own = to_pem(cert).encode("ascii") + ca_pem, private_pem(key)
            say(
                f"console certificate {fingerprint(cert)} (issued by the escrow CA, "
                f"until {iso(cert.not_valid_after_utc)})"
            )
        app = create_app(console_, session_seconds=session_seconds, broker=probe, prices=prices)
        server = make_server(app, host=host, port=port, tls=TlsFiles(own[0], own[1], ca_pem))
        say(f"console of escrow {console_.escrow.name!r} on https://{host}:{port}/")
        await server.serve()


@click.command("operator")
@escrow_location
@click.argument("name")
@escrow_passphrase_option("--escrow-passphrase-file")
@click.option(
    "--passphrase-file",
    "operator_passphrase_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the operator's console passphrase [else env {OPERATOR_PASSPHRASE_ENV}].",
)
@click.option(
    "--p12",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also issue a console client certificate and write it, with its key, to this "
    "PKCS#12 file (for a browser), encrypted under the operator's console passphrase.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Validity of the client certificate.",
)
@click.option("--log-n", type=click.IntRange(10, 20), default=DEFAULT_LOG_N, hidden=True)
@json_option
def operator(
    location: Location,
    name: str,
    escrow_passphrase_file: Path | None,
    operator_passphrase_file: Path | None,
    p12: Path | None,
    days: int,
    log_n: int,
    as_json: bool,
) -> None:
    """Make registered user NAME an operator of the web console, or give it a new
    console passphrase and certificate (its sessions end). Revoking NAME
    (`consign escrow revoke`) shuts it out of the console at once."""
    secret = read_passphrase(operator_passphrase_file, OPERATOR_PASSPHRASE_ENV, "operator")
    escrow_secret = (
        read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow") if p12 else None
    )

    async def go() -> x509.Certificate | None:
        hashed = await asyncio.to_thread(hash_passphrase, secret, log_n=log_n)
        async with open_escrow(location) as esc:
            issued = None
            if escrow_secret is not None and p12 is not None:
                ca = await load_ca(esc, escrow_secret)
                key, cert = issue_operator_certificate(ca, name, now=now(), days=days)
                issued = cert
                data = operator_pkcs12(name, key, cert, esc.ca_certificate, secret)
            t = int(now().timestamp())
            certificate = (
                None
                if issued is None
                else (fingerprint(issued), int(issued.not_valid_after_utc.timestamp()))
            )

            async def job(tx: Tx) -> None:
                await add_operator(tx, name, hashed, now=t, certificate=certificate)
                if p12 is not None and issued is not None:
                    write_bytes(p12, data, private=True)

            await esc.store.run(job)
            return issued

    issued = run(go())
    if issued is None and p12 is not None:
        raise EscrowError("no certificate was issued")
    emit(
        {
            "name": name,
            "certificate": None if issued is None else fingerprint(issued),
            "p12": None if p12 is None else str(p12),
        },
        as_json,
    )
    say(f"OK {name!r} is an operator of the console")


COMMANDS = (console, operator)

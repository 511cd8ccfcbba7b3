"""Serving the console over HTTPS with uvicorn.

The server's certificate is the operator's own (`--tls-cert/--tls-key`) or one
the escrow's CA issues at start-up (`console.tls`). TLS asks every client for a
certificate chaining to the escrow's CA but does not require one (passphrase
login stays possible); a certificate that does not chain is refused in the
handshake. `CertificateProtocol` hands the verified client certificate to the
app through the ASGI TLS extension (`scope["extensions"]["tls"]
["client_cert_chain"]`), which uvicorn does not fill in itself. This module
must never log a key and never leave the server's key on disk after start-up.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from broker.console import now as wall_clock
from escrow_worker.ca.authority import load_ca
from escrow_worker.ca.operator import open_escrow
from escrow_worker.console.actions import Console
from escrow_worker.state.location import Location

__all__ = ["CertificateProtocol", "TlsFiles", "make_server", "open_console"]


@dataclass(frozen=True)
class TlsFiles:
    """PEM: the server's certificate (chain) and key, and the CA that client
    certificates must chain to."""

    cert: bytes
    key: bytes
    client_ca: bytes

    def __repr__(self) -> str:  # never the key
        return "<TlsFiles>"


class CertificateProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus the ASGI TLS extension: the client's
    verified certificate, if it sent one, in every request's scope."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            chain = [ssl.DER_cert_to_PEM_cert(der)]
            inner = self.app

            async def with_certificate(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "http":
                    extensions = dict(scope.get("extensions") or {})
                    extensions["tls"] = {"client_cert_chain": chain}
                    scope = {**scope, "extensions": extensions}
                await inner(scope, receive, send)

            self.app = with_certificate


def make_server(app: Any, *, host: str, port: int, tls: TlsFiles) -> uvicorn.Server:
    """A uvicorn server for `app`, its TLS context built now (the key files live
    only for that moment, in a private temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="consign-console-") as tmp:
        files = {name: Path(tmp) / name for name in ("cert.pem", "key.pem", "ca.pem")}
        for (name, path), data in zip(
            files.items(), (tls.cert, tls.key, tls.client_ca), strict=True
        ):
            path.write_bytes(data)
            path.chmod(0o600)
            del name
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=CertificateProtocol,
            ssl_certfile=str(files["cert.pem"]),
            ssl_keyfile=str(files["key.pem"]),
            ssl_ca_certs=str(files["ca.pem"]),
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            proxy_headers=False,
            server_header=False,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        config.load()
    assert config.ssl is not None
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return uvicorn.Server(config)


@asynccontextmanager
async def open_console(
    where: Location, passphrase: bytes, *, clock: Callable[[], datetime] = wall_clock
) -> AsyncIterator[Console]:
    """The escrow at `where`, its CA unsealed with the escrow passphrase."""
    async with open_escrow(where) as escrow:
        yield Console(escrow, await load_ca(escrow, passphrase), passphrase, clock)

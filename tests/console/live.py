"""A console served for real: `consign escrow console` in a subprocess, over
HTTPS, on a SQLite escrow made for it (certificates valid now, by the wall
clock), with operator olga made by `consign escrow operator --p12`, and a
price table (`--prices`)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.broker.pki_helpers import ESCROW_PASS
from tests.cli_helpers import CONSIGN, Env
from tests.console.helpers import OPERATOR, OPERATOR_PASS, USERS
from tests.escrow_worker.helpers import EscrowSetup, make_escrow

#: The live console's price table (`--prices`).
PRICES = 'currency = "EUR"\n[prices]\ndeposit = "0.50"\nrelease = "0.20"\n'


@dataclass
class Live:
    setup: EscrowSetup
    url: str
    env: Env
    #: olga's client certificate and key, PEM files, from the PKCS#12 the CLI wrote.
    cert: tuple[str, str]
    #: That PKCS#12 file (encrypted under olga's console passphrase).
    p12: Path

    @property
    def ca_file(self) -> str:
        return str(self.setup.directory / "ca.pem")

    def client(self, cert: tuple[str, str] | None = None) -> httpx.Client:
        """A client that checks the console's certificate against the escrow's CA
        (and its name, 127.0.0.1) and presents `cert` if given."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if cert is not None:
            context.load_cert_chain(*cert)
        return httpx.Client(base_url=self.url, verify=context, timeout=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_files(p12: Path, passphrase: bytes, out: Path) -> tuple[str, str]:
    key, cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), passphrase)
    assert key is not None
    assert cert is not None
    (out / "olga.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "olga.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(out / "olga.crt"), str(out / "olga.key")


@contextmanager
def live_console(root: Path) -> Iterator[Live]:
    setup = asyncio.run(make_escrow(root / "escrow", USERS, now=datetime.now(UTC)))
    env = Env(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(setup.directory),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PASS.decode(),
            "CONSIGN_OPERATOR_PASSPHRASE": OPERATOR_PASS,
        },
    )
    made = env.run("escrow", "operator", OPERATOR, "--p12", str(root / "olga.p12"), "--log-n", "10")
    assert made.code == 0, made
    (root / "prices.toml").write_text(PRICES)
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    environ.update(env.vars)
    log = (root / "console.log").open("wb")
    process = subprocess.Popen(
        [
            CONSIGN,
            "escrow",
            "console",
            "--port",
            str(port),
            "--session-minutes",
            "5",
            "--prices",
            str(root / "prices.toml"),
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        live = Live(
            setup,
            f"https://127.0.0.1:{port}",
            env,
            _pem_files(root / "olga.p12", OPERATOR_PASS.encode(), root),
            root / "olga.p12",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with live.client() as c:
                    if c.get("/login").status_code == 200:
                        break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((root / "console.log").read_text()) from None
            time.sleep(0.2)
        yield live
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()

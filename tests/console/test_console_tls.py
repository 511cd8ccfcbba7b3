"""The console served by `consign escrow console` over HTTPS: logging in with
the operator's client certificate from `consign escrow operator --p12`, and
refusing a certificate from another CA, a receiver's, and a revoked
operator's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from escrow_worker.ca.authority import load_ca
from escrow_worker.ca.operator import open_escrow
from escrow_worker.console.tls import issue_operator_certificate, private_pem
from tests.broker.pki_helpers import ESCROW_PASS, make_ca
from tests.console.helpers import OPERATOR_PASS
from tests.console.live import Live, pem_files


def _write(tmp_path: Path, name: str, key: object, cert: object) -> tuple[str, str]:
    crt, pem = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
    pem.write_bytes(private_pem(key))  # type: ignore[arg-type]
    return str(crt), str(pem)


def test_an_operator_logs_in_with_its_client_certificate(live: Live) -> None:
    with live.client(live.cert) as c:
        r = c.post("/api/session/certificate")
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        assert r.json()["operator"] == "olga"
        assert c.get("/api/users", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/login").status_code == 200
        form = {"csrf": c.cookies["consign_console_login"]}
        r = c.post("/login/certificate", data=form)
        assert r.status_code == 303
        assert c.post("/login/certificate", data={"csrf": "forged"}).status_code == 403
        assert c.get("/users").status_code == 200
    with live.client() as c:
        assert c.post("/api/session/certificate").status_code == 401
        c.get("/login")
        form = {"csrf": c.cookies["consign_console_login"]}
        assert c.post("/login/certificate", data=form).status_code == 401


def test_other_certificates_are_refused(live: Live, tmp_path: Path) -> None:
    # Another CA's certificate: the TLS handshake fails.
    stranger = make_ca("elsewhere", now=datetime.now(UTC))
    key, cert = issue_operator_certificate(stranger, "olga", now=datetime.now(UTC), days=5)
    with (
        live.client(_write(tmp_path, "stranger", key, cert)) as c,
        pytest.raises(httpx.TransportError),
    ):
        c.post("/api/session/certificate")

    # A console certificate the escrow CA issued to a receiver that is no operator.
    async def for_bob() -> tuple[object, object]:
        async with open_escrow(live.setup.location) as esc:
            ca = await load_ca(esc, ESCROW_PASS)
            return issue_operator_certificate(ca, "bob", now=datetime.now(UTC), days=5)

    key, cert = asyncio.run(for_bob())
    with live.client(_write(tmp_path, "bob", key, cert)) as c:
        assert c.post("/api/session/certificate").status_code == 401
        c.get("/login")
        form = {"csrf": c.cookies["consign_console_login"]}
        assert c.post("/login/certificate", data=form).status_code == 401


def test_a_revoked_operator_certificate_is_refused(live: Live, tmp_path: Path) -> None:
    # otto, made an operator for this test alone: the world's olga stays usable.
    made = live.env.run("escrow", "operator", "otto", "--p12", str(tmp_path / "otto.p12"))
    assert made.code == 0, made
    otto = pem_files(tmp_path / "otto.p12", OPERATOR_PASS.encode(), tmp_path, "otto")
    with live.client(otto) as c:
        r = c.post("/api/session/certificate")
        assert r.status_code == 200, r.text
        assert r.json()["operator"] == "otto"
        token = r.json()["token"]
        revoked = live.env.run("escrow", "revoke", "otto")
        assert revoked.code == 0, revoked
        assert c.post("/api/session/certificate").status_code == 401
        assert c.get("/api/users", headers={"authorization": f"Bearer {token}"}).status_code == 401
    with live.client(live.cert) as c:  # another operator is not shut out with it
        assert c.post("/api/session/certificate").status_code == 200

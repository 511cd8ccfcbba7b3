"""`consign id show --pem`: a user's own certificates in PEM, for other tools;
`openssl verify` accepts them against the CA certificate it prints too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.pki.profile import fingerprint
from tests.cli_helpers import Env, assert_error

ESCROW_PW = "operator passphrase"
ALICE_PW = "alice passphrase"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """An escrow "acme" and alice, registered and imported into her home; hank
    with keys but no certificates yet."""
    root = tmp_path_factory.mktemp("export")
    env = Env(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(root / "escrow"),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PW,
            "CONSIGN_HOME": str(root / "home"),
            "CONSIGN_IDENTITY_PASSPHRASE": ALICE_PW,
        },
    )
    assert env.run("escrow", "init", "--name", "acme").code == 0
    assert env.run("escrow", "register", "alice", "--out", "alice.identity").code == 0
    assert env.run("id", "import", "alice.identity").code == 0
    assert env.run("id", "create", "hank", "--home", "hank-home").code == 0
    return env


def _certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_pem_prints_the_signing_encryption_and_ca_certificates(world: Env) -> None:
    result = world.run("id", "show", "alice", "--pem")
    assert result.code == 0, result
    assert result.err == ""
    assert "PRIVATE" not in result.out
    signing, encryption, ca = _certs(result.out)
    assert [_cn(signing), _cn(encryption), _cn(ca)] == ["alice", "alice", "acme CA"]
    users = world.run("escrow", "users", "--json").json()
    alice = next(u for u in users if u["name"] == "alice")  # type: ignore[attr-defined]
    shown = world.run("id", "show", "alice", "--json").json()
    assert isinstance(shown, dict)
    assert fingerprint(signing) == shown["signing"]["fingerprint"]
    assert fingerprint(encryption) == shown["encryption"]["fingerprint"]
    assert {c["fingerprint"] for c in alice["certificates"]} >= {
        fingerprint(signing),
        fingerprint(encryption),
    }


@pytest.mark.parametrize("which", ["signing", "encryption", "ca"])
def test_one_certificate_at_a_time(world: Env, which: str) -> None:
    result = world.run("id", "show", "--pem", "--cert", which)
    assert result.code == 0, result
    (cert,) = _certs(result.out)
    assert _cn(cert) == ("acme CA" if which == "ca" else "alice")


def test_openssl_verify_accepts_them(world: Env, tmp_path: Path) -> None:
    for which in ("signing", "encryption", "ca"):
        out = world.run("id", "show", "--pem", "--cert", which)
        assert out.code == 0, out
        (tmp_path / f"{which}.pem").write_text(out.out)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    for which in ("signing", "encryption"):
        cert = x509.load_pem_x509_certificate((tmp_path / f"{which}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)  # what openssl checks, by cryptography
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is not installed; CI=true needs it", pytrace=False)
        pytest.skip("openssl is not installed; checked with cryptography only")
    proc = subprocess.run(
        [openssl, "verify", "-CAfile", "ca.pem", "signing.pem", "encryption.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["signing.pem: OK", "encryption.pem: OK"]


def test_pem_and_json_do_not_mix(world: Env) -> None:
    result = world.run("id", "show", "--pem", "--json")
    assert result.code == 2
    assert "--pem" in result.err
    assert result.out == ""


def test_cert_without_pem_is_a_usage_error(world: Env) -> None:
    result = world.run("id", "show", "--cert", "ca")
    assert result.code == 2
    assert "--cert" in result.err


def test_an_identity_without_certificates_has_none_to_export(world: Env) -> None:
    result = world.run("id", "show", "--home", "hank-home", "--pem")
    assert_error(result, "has no certificates yet", "consign id import")

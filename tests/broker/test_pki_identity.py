"""Identity files, sealed keys, certificate requests and bundles: round trips and
every way a damaged or wrong input is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from broker.canonical import canonical_json
from broker.errors import CertificateRejected, CertReason, IdentityFileError
from broker.pki.bundle import CertificateBundle, parse_bundle
from broker.pki.csr import build_csr, parse_csr
from broker.pki.identity import (
    Identity,
    IdentityKeys,
    dump_identity,
    generate_keys,
    load_identity_bytes,
    read_identity_file,
    write_identity_file,
)
from broker.pki.profile import OID_CSR_X25519_KEY, fingerprint
from broker.pki.sealed import _checksum
from client import ClientError, IdentityError, IdentityHome, UntrustedCertificate
from escrow_worker.ca.authority import seal_private_key, unseal_private_key
from tests.broker.pki_helpers import (
    IDENTITY_PASS,
    LOG_N,
    NOW,
    crl_revoking,
    empty_crl,
    make_ca,
    make_identity,
    tree,
)

CA = make_ca()
ALICE = make_identity(CA)
RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _same_keys(a: Identity | IdentityKeys, b: Identity | IdentityKeys) -> bool:
    return a.signing_key.public_key().public_bytes(*RAW) == b.signing_key.public_key().public_bytes(
        *RAW
    ) and a.encryption_key.public_key().public_bytes(
        *RAW
    ) == b.encryption_key.public_key().public_bytes(*RAW)


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "pending"])
def test_identity_file_round_trip(tmp_path: Path, complete: bool) -> None:
    source: Identity | IdentityKeys = ALICE if complete else generate_keys("bob")
    path = tmp_path / "x.identity"
    write_identity_file(path, source, IDENTITY_PASS, log_n=LOG_N)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_identity_bytes(path.read_bytes(), IDENTITY_PASS)
    assert type(loaded) is type(source)
    assert loaded.name == source.name
    assert _same_keys(loaded, source)
    if isinstance(source, Identity):
        assert isinstance(loaded, Identity)
        assert loaded.signing_certificate == source.signing_certificate
        assert loaded.encryption_certificate == source.encryption_certificate
        assert loaded.ca_certificate == source.ca_certificate
        assert loaded.signer == fingerprint(source.signing_certificate)
        assert read_identity_file(path, IDENTITY_PASS).name == "alice"
    else:
        assert isinstance(read_identity_file(path, IDENTITY_PASS), IdentityKeys)


def test_identity_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "x.identity"
    write_identity_file(path, ALICE, IDENTITY_PASS, log_n=LOG_N)
    before = path.read_bytes()
    with pytest.raises(Exception, match="already exists"):
        write_identity_file(path, generate_keys("bob"), IDENTITY_PASS, log_n=LOG_N)
    assert path.read_bytes() == before


def test_no_secret_in_the_file() -> None:
    data = dump_identity(ALICE, IDENTITY_PASS, log_n=LOG_N)
    raw = ALICE.signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert raw not in data
    assert IDENTITY_PASS not in data
    assert b"alice" not in data  # even the name is inside the ciphertext


GOOD = dump_identity(ALICE, IDENTITY_PASS, log_n=LOG_N)


def _edit(change: dict[str, object], fix_checksum: bool) -> bytes:
    doc = json.loads(GOOD)
    doc.update(change)
    if fix_checksum:
        header = {k: v for k, v in doc.items() if k not in ("ciphertext", "checksum")}
        doc["checksum"] = _checksum(header, doc["ciphertext"])
    return canonical_json(doc) + b"\n"  # the form consign writes


def _flip_ciphertext(fix_checksum: bool) -> bytes:
    doc = json.loads(GOOD)
    text = doc["ciphertext"]
    flipped = ("B" if text[10] == "A" else "A").join((text[:10], text[11:]))
    return _edit({"ciphertext": flipped}, fix_checksum)


def _inconsistent() -> bytes:
    other = make_identity(CA, "alice")
    mixed = Identity(
        "alice",
        ALICE.signing_key,
        ALICE.encryption_key,
        other.signing_certificate,
        ALICE.encryption_certificate,
        CA.certificate,
    )
    return dump_identity(mixed, IDENTITY_PASS, log_n=LOG_N)


def _foreign_ca() -> bytes:
    mixed = Identity(
        "alice",
        ALICE.signing_key,
        ALICE.encryption_key,
        ALICE.signing_certificate,
        ALICE.encryption_certificate,
        make_ca("other").certificate,
    )
    return dump_identity(mixed, IDENTITY_PASS, log_n=LOG_N)


@pytest.mark.parametrize(
    ("data", "passphrase", "reason"),
    [
        (GOOD, b"wrong passphrase", "wrong_passphrase"),
        (GOOD, IDENTITY_PASS + b" ", "wrong_passphrase"),
        (_flip_ciphertext(fix_checksum=False), IDENTITY_PASS, "damaged"),
        (_flip_ciphertext(fix_checksum=True), IDENTITY_PASS, "wrong_passphrase"),
        (_edit({"kind": "escrow-key"}, fix_checksum=True), IDENTITY_PASS, "malformed"),
        (_edit({"version": 2}, fix_checksum=True), IDENTITY_PASS, "malformed"),
        (
            _edit({"kdf": {"log_n": 30, "name": "scrypt", "p": 1, "r": 8, "salt": "AAAA"}}, True),
            IDENTITY_PASS,
            "malformed",
        ),
        (_edit({"nonce": "AAAA"}, fix_checksum=True), IDENTITY_PASS, "malformed"),
        (GOOD[: len(GOOD) // 2], IDENTITY_PASS, "malformed"),
        (b"", IDENTITY_PASS, "malformed"),
        (b"\x00\xff binary", IDENTITY_PASS, "malformed"),
        (b'{"format":"something-else"}', IDENTITY_PASS, "malformed"),
        (_inconsistent(), IDENTITY_PASS, "inconsistent"),
        (_foreign_ca(), IDENTITY_PASS, "inconsistent"),
    ],
    ids=[
        "wrong-passphrase",
        "passphrase-with-space",
        "flipped-byte",
        "flipped-byte-fixed-checksum",
        "wrong-kind",
        "wrong-version",
        "huge-scrypt",
        "bad-nonce",
        "truncated",
        "empty",
        "binary",
        "other-format",
        "cert-not-matching-key",
        "foreign-ca",
    ],
)
def test_bad_identity_files_are_refused(data: bytes, passphrase: bytes, reason: str) -> None:
    with pytest.raises(IdentityFileError) as info:
        load_identity_bytes(data, passphrase)
    assert info.value.reason == reason
    assert info.value.hint


def test_escrow_key_seal_round_trip_and_wrong_passphrase() -> None:
    key = Ed25519PrivateKey.generate()
    sealed = seal_private_key(key, b"pw", log_n=LOG_N)
    again = unseal_private_key(sealed, b"pw")
    assert isinstance(again, Ed25519PrivateKey)
    assert again.public_key().public_bytes(*RAW) == key.public_key().public_bytes(*RAW)
    with pytest.raises(IdentityFileError) as info:
        unseal_private_key(sealed, b"other")
    assert info.value.reason == "wrong_passphrase"
    with pytest.raises(IdentityFileError):  # an identity file is not a key file
        unseal_private_key(GOOD, IDENTITY_PASS)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(IdentityFileError):
        dump_identity(ALICE, b"", log_n=LOG_N)


# --- certificate requests ---------------------------------------------------------


def test_csr_round_trip_carries_both_keys() -> None:
    keys = generate_keys("bob")
    request = parse_csr(build_csr(keys))
    assert request.name == "bob"
    assert request.signing_key.public_bytes(*RAW) == keys.signing_key.public_key().public_bytes(
        *RAW
    )
    assert request.encryption_key.public_bytes(
        *RAW
    ) == keys.encryption_key.public_key().public_bytes(*RAW)
    der = x509.load_pem_x509_csr(build_csr(keys)).public_bytes(serialization.Encoding.DER)
    assert parse_csr(der).name == "bob"


def _csr(
    *, key: object = None, name: str = "bob", x25519: bytes | None = None, extra_attr: bool = False
) -> bytes:
    keys = generate_keys("bob")
    signer = key if key is not None else keys.signing_key
    spki = keys.encryption_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    if extra_attr:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil"))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if x25519 != b"omit":
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_CSR_X25519_KEY, x25519 or spki), critical=False
        )
    algorithm = hashes.SHA256() if isinstance(signer, ec.EllipticCurvePrivateKey) else None
    return builder.sign(signer, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _tampered_csr() -> bytes:
    der = x509.load_pem_x509_csr(_csr()).public_bytes(serialization.Encoding.DER)
    at = der.index(b"bob")
    return der[:at] + b"eve" + der[at + 3 :]


ED_SPKI = (
    Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"junk",
        ALICE.signing_certificate.public_bytes(serialization.Encoding.PEM),
        _csr(key=ec.generate_private_key(ec.SECP256R1())),
        _csr(x25519=b"omit"),
        _csr(x25519=b"\x30\x03garbage"),
        _csr(x25519=ED_SPKI),
        _csr(name="Not A Valid Name"),
        _csr(extra_attr=True),
        _tampered_csr(),
    ],
    ids=[
        "empty",
        "junk",
        "a-certificate",
        "ecdsa-signed",
        "no-x25519",
        "garbage-x25519",
        "ed25519-as-x25519",
        "bad-name",
        "extra-subject",
        "tampered",
    ],
)
def test_bad_csrs_are_refused(data: bytes) -> None:
    with pytest.raises(CertificateRejected) as info:
        parse_csr(data)
    assert info.value.reason is CertReason.MALFORMED


# --- bundles and IdentityHome -----------------------------------------------------


def _bundle_for(keys: IdentityKeys, ca: object = CA) -> CertificateBundle:
    from broker.pki.profile import Role
    from escrow_worker.ca.authority import CertificateAuthority

    assert isinstance(ca, CertificateAuthority)
    return CertificateBundle(
        ca.certificate,
        ca.issue(keys.name, Role.SIGNING, keys.signing_key.public_key(), now=NOW, days=30),
        ca.issue(keys.name, Role.ENCRYPTION, keys.encryption_key.public_key(), now=NOW, days=30),
        empty_crl(ca),
    )


def test_bundle_round_trip_any_order() -> None:
    bundle = _bundle_for(generate_keys("bob"))
    pem = bundle.to_pem()
    assert parse_bundle(pem) == bundle
    blocks = re.findall(rb"-----BEGIN [A-Z0-9 ]+-----\n.*?-----END [A-Z0-9 ]+-----\n", pem, re.S)
    assert len(blocks) == 4
    shuffled = b"".join(reversed(blocks))
    assert parse_bundle(shuffled) == bundle


@pytest.mark.parametrize(
    "cut",
    [
        lambda pem: b"",
        lambda pem: pem.split(b"-----BEGIN X509 CRL-----")[0],
        lambda pem: pem + ALICE.signing_certificate.public_bytes(serialization.Encoding.PEM),
        lambda pem: pem + b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        lambda pem: pem.replace(b"MII", b"MIX", 1),
    ],
    ids=["empty", "no-crl", "extra-cert", "private-key-block", "corrupt"],
)
def test_bad_bundles_are_refused(cut: object) -> None:
    pem = _bundle_for(generate_keys("bob")).to_pem()
    with pytest.raises(CertificateRejected) as info:
        parse_bundle(cut(pem))  # type: ignore[operator]
    assert info.value.reason is CertReason.MALFORMED


def test_home_create_then_import(tmp_path: Path) -> None:
    home = IdentityHome(tmp_path / "home", log_n=LOG_N)
    created = home.create("bob", IDENTITY_PASS)
    assert created.request_path.read_bytes() == created.request_pem
    pending = home.load("bob", IDENTITY_PASS)
    assert isinstance(pending, IdentityKeys)
    request = parse_csr(created.request_pem)
    assert request.name == "bob"
    bundle = _bundle_for(pending)
    identity = home.import_file(
        bundle.to_pem(), IDENTITY_PASS, now=NOW, ca_fingerprint=fingerprint(CA.certificate).upper()
    )
    assert identity.signing_certificate == bundle.signing
    loaded = home.load("bob", IDENTITY_PASS)
    assert isinstance(loaded, Identity)
    assert _same_keys(loaded, pending)
    assert home.resolve(None) == "bob"


def _other_keys_bundle(home: IdentityHome) -> bytes:
    return _bundle_for(generate_keys("bob")).to_pem()


def _foreign_bundle(home: IdentityHome) -> bytes:
    pending = home.load("bob", IDENTITY_PASS)
    assert isinstance(pending, IdentityKeys)
    return _bundle_for(pending, make_ca("other")).to_pem()


def _revoked_bundle(home: IdentityHome) -> bytes:
    pending = home.load("bob", IDENTITY_PASS)
    assert isinstance(pending, IdentityKeys)
    bundle = _bundle_for(pending)
    return CertificateBundle(
        bundle.ca, bundle.signing, bundle.encryption, crl_revoking(CA, bundle.signing)
    ).to_pem()


def _unknown_name_bundle(home: IdentityHome) -> bytes:
    return _bundle_for(generate_keys("carol")).to_pem()


@pytest.mark.parametrize(
    ("make", "passphrase", "pin", "error", "reason"),
    [
        (_other_keys_bundle, IDENTITY_PASS, None, IdentityError, "mismatch"),
        (
            _foreign_bundle,
            IDENTITY_PASS,
            fingerprint(CA.certificate),
            UntrustedCertificate,
            "untrusted_issuer",
        ),
        (_revoked_bundle, IDENTITY_PASS, None, UntrustedCertificate, "revoked"),
        (_unknown_name_bundle, IDENTITY_PASS, None, IdentityError, "missing"),
        (
            lambda home: _bundle_for(generate_keys("bob")).to_pem(),
            b"bad",
            None,
            IdentityError,
            "wrong_passphrase",
        ),
        (lambda home: b"garbage", IDENTITY_PASS, None, UntrustedCertificate, "malformed"),
    ],
    ids=[
        "other-keys",
        "pinned-ca-differs",
        "revoked",
        "no-pending-identity",
        "wrong-passphrase",
        "garbage",
    ],
)
def test_home_import_refusals_change_nothing(
    tmp_path: Path, make: object, passphrase: bytes, pin: str | None, error: type, reason: str
) -> None:
    home = IdentityHome(tmp_path / "home", log_n=LOG_N)
    home.create("bob", IDENTITY_PASS)
    data = make(home)  # type: ignore[operator]
    before = tree(home.root)
    with pytest.raises(error) as info:
        home.import_file(data, passphrase, now=NOW, ca_fingerprint=pin)
    assert info.value.reason == reason
    assert tree(home.root) == before


def test_home_imports_an_operator_identity_file(tmp_path: Path) -> None:
    home = IdentityHome(tmp_path / "home", log_n=LOG_N)
    identity = home.import_file(GOOD, IDENTITY_PASS, now=NOW)
    assert identity.name == "alice"
    assert home.identity_path("alice").read_bytes() == GOOD
    with pytest.raises(IdentityError) as info:
        home.create("alice", IDENTITY_PASS)
    assert info.value.reason == "exists"


def test_client_load_identity(tmp_path: Path) -> None:
    from client import load_identity as client_load_identity

    path = tmp_path / "alice.identity"
    path.write_bytes(GOOD)
    identity = client_load_identity(path, IDENTITY_PASS)
    assert identity.signer == fingerprint(ALICE.signing_certificate)
    with pytest.raises(IdentityError) as info:
        client_load_identity(path, b"wrong")
    assert info.value.reason == "wrong_passphrase"
    pending = tmp_path / "bob.identity"
    write_identity_file(pending, generate_keys("bob"), IDENTITY_PASS, log_n=LOG_N)
    with pytest.raises(IdentityError) as info:
        client_load_identity(pending, IDENTITY_PASS)
    assert info.value.reason == "inconsistent"
    with pytest.raises(ClientError, match="cannot read"):
        client_load_identity(tmp_path / "missing", IDENTITY_PASS)

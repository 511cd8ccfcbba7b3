"""Canonical means canonical (issue 17): every signed or sealed JSON is refused
unless it is exactly the canonical encoding, with an error that says so and
names what is wrong where nothing secret depends on it. One test per kind: the
envelope's wire form and payload, the deposit sealed to the escrow, the
passphrase-sealed file (with its one LF) and the identity and escrow-key
identity plaintext inside it. (The consignment's manifest: tests/vectors
fail_noncanonical_manifest; the escrow's key files, the master keyring, the
stored key part and a deposit through the worker:
tests/escrow_worker/test_canonical_state.py.)"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from broker import DEPOSIT_INFO, SealedMessageError, SignedEnvelope, open_deposit, seal_deposit
from broker.canonical import canonical_json
from broker.errors import EnvelopeError, IdentityFileError
from broker.pki import sealed
from broker.pki.identity import dump_identity, load_identity_bytes
from tests.broker.pki_helpers import IDENTITY_PASS, LOG_N, make_ca, make_identity
from tests.client.consign_helpers import RECEIVERS, seal_bytes

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
ESCROW = X25519PrivateKey.generate()


def _pretty(data: bytes) -> bytes:
    return json.dumps(json.loads(data), indent=1, sort_keys=True).encode()


# -- the envelope ------------------------------------------------------------------


def _signed() -> SignedEnvelope:
    key = Ed25519PrivateKey.generate()
    payload = canonical_json({"a": 1})
    return SignedEnvelope(payload=payload, signature=key.sign(payload))


def test_a_wire_form_with_whitespace_is_refused() -> None:
    wire = _signed().to_wire()
    for variant in (_pretty(wire), wire + b"\n", wire.replace(b",", b", ", 1)):
        with pytest.raises(EnvelopeError) as refused:
            SignedEnvelope.from_wire(variant)
        assert refused.value.reason == "not_canonical"


def test_the_wire_version_is_the_integer_1_only() -> None:
    wire = json.loads(_signed().to_wire())
    for v in (True, 2, "1"):
        with pytest.raises(EnvelopeError) as refused:
            SignedEnvelope.from_wire(canonical_json(dict(wire, v=v)))
        assert refused.value.reason == "malformed"


def test_a_payload_that_is_not_canonical_is_refused() -> None:
    signed = SignedEnvelope(payload=b'{"b":1, "a":2}', signature=b"\0" * 64)
    with pytest.raises(EnvelopeError) as refused:
        signed.unverified()
    assert refused.value.reason == "not_canonical"


# -- the deposit -------------------------------------------------------------------


def _deposit_json() -> tuple[str, dict[str, Any]]:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    return deposit.consignment_id, json.loads(canonical_json(deposit.model_dump(mode="json")))


def _seal(cid: str, plaintext: bytes) -> bytes:
    return SUITE.encrypt(plaintext, ESCROW.public_key(), info=DEPOSIT_INFO + bytes.fromhex(cid))


def _refusal(cid: str, plaintext: bytes) -> SealedMessageError:
    with pytest.raises(SealedMessageError) as refused:
        open_deposit(_seal(cid, plaintext), cid, ESCROW)
    return refused.value


def test_the_canonical_deposit_opens() -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    sealed_deposit = seal_deposit(deposit, ESCROW.public_key())
    assert open_deposit(sealed_deposit, deposit.consignment_id, ESCROW) == deposit
    cid, value = _deposit_json()
    assert open_deposit(_seal(cid, canonical_json(value)), cid, ESCROW).consignment_id == cid


def test_a_deposit_with_spaces_or_newlines_is_refused() -> None:
    cid, value = _deposit_json()
    for text in (
        json.dumps(value, sort_keys=True).encode(),  # ", " and ": "
        json.dumps(value, sort_keys=True, indent=2).encode(),
        canonical_json(value) + b"\n",
    ):
        refusal = _refusal(cid, text)
        assert refusal.reason == "not_canonical"
        assert "not in canonical encoding" in refusal.message


def test_a_deposit_with_keys_out_of_order_is_refused() -> None:
    cid, value = _deposit_json()
    shuffled = json.dumps(dict(reversed(list(value.items()))), separators=(",", ":"))
    assert _refusal(cid, shuffled.encode()).reason == "not_canonical"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda v: v.pop("version"), "version"),  # a field with a default, missing
        (lambda v: v["policy"]["attributes"].pop("cosigners"), "policy.attributes.cosigners"),
        (lambda v: v.update(consignment_size=str(v["consignment_size"])), "consignment_size"),
        (lambda v: v.pop("wrapped_keys"), "wrapped_keys"),
    ],
    ids=["missing", "missing-nested-default", "integer-as-string", "missing-empty-map"],
)
def test_a_deposit_that_is_not_the_encoding_of_a_deposit_names_the_field(
    change: Any, field: str
) -> None:
    cid, value = _deposit_json()
    change(value)
    refusal = _refusal(cid, canonical_json(value))
    assert refusal.reason == "not_canonical"
    assert f"field {field} " in refusal.message


def test_an_invalid_deposit_names_the_field() -> None:
    cid, value = _deposit_json()
    value["policy"]["receivers"][0]["encryption_key"] = base64.b64encode(b"short").decode()
    refusal = _refusal(cid, canonical_json(value))
    assert refusal.reason == "invalid"
    assert "field policy.receivers.0: " in refusal.message
    assert "encryption_key must be a 32-byte X25519 public key" in refusal.message


def test_a_deposit_that_is_not_json_or_does_not_open() -> None:
    cid, _ = _deposit_json()
    assert _refusal(cid, b"\xff not json").reason == "not_json"
    with pytest.raises(SealedMessageError) as refused:
        open_deposit(b"\0" * 80, cid, ESCROW)
    assert refused.value.reason == "cannot_open"
    assert "cannot be opened" in refused.value.message


# -- passphrase-sealed files ------------------------------------------------------

CA = make_ca()
ALICE = make_identity(CA)
GOOD = dump_identity(ALICE, IDENTITY_PASS, log_n=LOG_N)


def test_a_sealed_file_is_one_line_of_canonical_json_and_one_lf() -> None:
    assert GOOD.endswith(b"}\n")
    assert GOOD.count(b"\n") == 1
    load_identity_bytes(GOOD, IDENTITY_PASS)
    for variant in (GOOD[:-1], GOOD + b"\n", _pretty(GOOD[:-1]) + b"\n", GOOD[:-1] + b"\r\n"):
        with pytest.raises(IdentityFileError) as refused:
            load_identity_bytes(variant, IDENTITY_PASS)
        assert refused.value.reason == "malformed"


def test_a_sealed_identity_whose_plaintext_is_not_canonical_is_refused() -> None:
    plaintext = sealed.unseal(GOOD, IDENTITY_PASS, kind="identity")
    loose = _pretty(plaintext)
    data = sealed.seal(loose, IDENTITY_PASS, kind="identity", log_n=LOG_N)
    with pytest.raises(IdentityFileError) as refused:
        load_identity_bytes(data, IDENTITY_PASS)
    assert refused.value.reason == "inconsistent"
    assert "canonical" in refused.value.message

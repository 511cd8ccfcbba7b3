"""broker.envelope: canonical encoding, signing, strict parsing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from broker import (
    MAX_ENVELOPE_BYTES,
    SIGNATURE_CONTEXT,
    Envelope,
    EnvelopeError,
    SignedEnvelope,
    new_envelope,
    sign_envelope,
    verify_envelope_signature,
)
from broker.canonical import canonical_json, parse_canonical_json, unb64
from broker.envelope import sign_new_envelope

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
SIGNER = "ab" * 32


def envelope(**overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "type": "directory.lookup",
        "body": {"name": "bob"},
        "audience": "acme",
        "signer": SIGNER,
        "now": NOW,
        "reply_to": "inbox.alice",
        "request_id": "0123456789abcdef0123456789abcdef",
        "nonce": bytes(range(16)),
    }
    fields.update(overrides)
    return new_envelope(**fields)


# The written encoding (docs/identity.md), as a test vector: exact bytes.
EXPECTED = (
    b'{"audience":"acme","body":{"name":"bob"},"expires_at":1906545900,'
    b'"issued_at":1906545600,"nonce":"AAECAwQFBgcICQoLDA0ODw==",'
    b'"reply_to":"inbox.alice","request_id":"0123456789abcdef0123456789abcdef",'
    b'"signer":"' + SIGNER.encode() + b'","type":"directory.lookup","version":1}'
)


def test_canonical_bytes_are_the_documented_vector() -> None:
    assert envelope().canonical_bytes() == EXPECTED
    assert Envelope.from_canonical_bytes(EXPECTED) == envelope()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        ({"é": "ü", "a": ""}, '{"a":"","é":"ü"}'.encode()),
        ({"n": -(2**53 - 1)}, b'{"n":-9007199254740991}'),
        ([], b"[]"),
        ("line\nbreak", b'"line\\nbreak"'),
    ],
)
def test_canonical_json_accepts(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert parse_canonical_json(expected) == value


@pytest.mark.parametrize(
    "value",
    [
        {"f": 1.5},
        {"big": 2**53},
        {1: "non-string key"},
        {"b": b"bytes"},
        {"s": "\ud800"},
        {"nan": float("nan")},
    ],
    ids=["float", "big-int", "int-key", "bytes", "lone-surrogate", "nan"],
)
def test_canonical_json_refuses(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        canonical_json(value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a": 1}', "not_canonical"),
        (b'{"b":1,"a":2}', "not_canonical"),
        (b'{"a":1,"a":1}', "malformed"),
        (b'{"a":1.0}', "malformed"),
        (b'{"a":NaN}', "malformed"),
        (b'{"a":"\\u00e9"}', "not_canonical"),
        (b"\xff", "malformed"),
        (b"[" * 2000 + b"]" * 2000, "malformed"),
        (b"", "malformed"),
    ],
    ids=["space", "unsorted", "duplicate", "float", "nan", "escaped", "bad-utf8", "deep", "empty"],
)
def test_parse_canonical_json_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_canonical_json(data)
    assert info.value.reason == reason


def test_sign_and_verify_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_envelope(envelope(), key)
    assert signed.payload == EXPECTED
    key.public_key().verify(signed.signature, SIGNATURE_CONTEXT + EXPECTED)
    wire = signed.to_wire()
    again = SignedEnvelope.from_wire(wire)
    assert again == signed
    assert again.to_wire() == wire
    assert verify_envelope_signature(again, key.public_key()) == envelope()


def _tamper(signed: SignedEnvelope) -> SignedEnvelope:
    return SignedEnvelope(
        payload=signed.payload.replace(b'"bob"', b'"eve"'), signature=signed.signature
    )


def _other_key(signed: SignedEnvelope) -> SignedEnvelope:
    return sign_envelope(signed.unverified(), Ed25519PrivateKey.generate())


@pytest.mark.parametrize("change", [_tamper, _other_key], ids=["tampered-body", "other-key"])
def test_verify_refuses_bad_signature(change: Any) -> None:
    key = Ed25519PrivateKey.generate()
    bad = change(sign_envelope(envelope(), key))
    with pytest.raises(EnvelopeError) as info:
        verify_envelope_signature(bad, key.public_key())
    assert info.value.reason == "bad_signature"


def test_signature_without_domain_prefix_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    payload = envelope().canonical_bytes()
    bare = SignedEnvelope(payload=payload, signature=key.sign(payload))
    with pytest.raises(EnvelopeError) as info:
        verify_envelope_signature(bare, key.public_key())
    assert info.value.reason == "bad_signature"


def _wire(payload: object, signature: object = "AAAA", v: object = 1) -> bytes:
    return canonical_json({"payload": payload, "signature": signature, "v": v})


GOOD_PAYLOAD = base64.b64encode(EXPECTED).decode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "malformed"),
        (canonical_json({"payload": GOOD_PAYLOAD, "v": 1}), "malformed"),
        (_wire(GOOD_PAYLOAD, v=2), "malformed"),
        (_wire("!!notbase64", "AAAA"), "malformed"),
        (_wire(GOOD_PAYLOAD.rstrip("=") + "", "AAAA"), "malformed"),
        (_wire(5, "AAAA"), "malformed"),
        (
            json.dumps({"payload": GOOD_PAYLOAD, "signature": "AAAA", "v": 1}).encode(),
            "not_canonical",
        ),
        (b"{" + b" " * MAX_ENVELOPE_BYTES + b"}", "too_large"),
    ],
    ids=["junk", "missing", "version", "bad-b64", "unpadded-b64", "not-str", "spaces", "huge"],
)
def test_from_wire_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        SignedEnvelope.from_wire(data)
    assert info.value.reason == reason


# 64 bytes (a signature) in base64 end in one byte and "==": the last character
# carries 4 bits that must be zero. "AB==" decodes (binascii accepts it) to the
# same byte as "AA==", so only the canonical check can refuse it.
CANONICAL_SIGNATURE = "A" * 84 + "AA=="
SPARE_BITS_SET = "A" * 84 + "AB=="


def test_from_wire_refuses_base64_with_spare_bits_set() -> None:
    assert base64.b64decode(SPARE_BITS_SET, validate=True) == bytes(64)
    assert SignedEnvelope.from_wire(_wire(GOOD_PAYLOAD, CANONICAL_SIGNATURE)).signature == bytes(64)
    with pytest.raises(EnvelopeError) as info:
        SignedEnvelope.from_wire(_wire(GOOD_PAYLOAD, SPARE_BITS_SET))
    assert info.value.reason == "malformed"
    assert "canonical base64" in info.value.message


@pytest.mark.parametrize(
    ("text", "data"), [("QQ==", b"A"), ("QUI=", b"AB"), ("QUJD", b"ABC"), ("", b"")]
)
def test_unb64_accepts_canonical_base64(text: str, data: bytes) -> None:
    assert unb64(text) == data


@pytest.mark.parametrize("text", ["QR==", "QUJ=", "QQ", "QQ==\n", " QQ==", "QQ=="[:-1] + "A"])
def test_unb64_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        unb64(text)


def _payload(**changes: Any) -> bytes:
    value = json.loads(EXPECTED)
    value.update(changes)
    return canonical_json({k: v for k, v in value.items() if v is not ...})


@pytest.mark.parametrize(
    "payload",
    [
        _payload(version=True),
        _payload(version="1"),
        _payload(version=0),
        _payload(type="Has Spaces"),
        _payload(request_id="short"),
        _payload(nonce="AAEC"),
        _payload(nonce="not base64!!!!!!!!!!!!!!"),
        _payload(signer="XY" * 32),
        _payload(body=[1]),
        _payload(extra="field"),
        _payload(audience=...),
    ],
    ids=[
        "bool-version",
        "str-version",
        "zero-version",
        "type",
        "request-id",
        "short-nonce",
        "bad-nonce",
        "signer",
        "body-list",
        "extra",
        "missing-audience",
    ],
)
def test_envelope_fields_are_strict(payload: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        Envelope.from_canonical_bytes(payload)
    assert info.value.reason == "malformed"


def test_new_envelope_refuses_bad_fields_with_broker_error() -> None:
    with pytest.raises(EnvelopeError):
        envelope(body={"x": 0.5})


def test_new_envelope_defaults_are_random_and_bounded() -> None:
    a, b = envelope(request_id=None, nonce=None), envelope(request_id=None, nonce=None)
    assert a.request_id != b.request_id
    assert a.nonce != b.nonce
    assert a.expires_at - a.issued_at == 300
    assert envelope(lifetime=timedelta(seconds=30)).expires_at == a.issued_at + 30


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=8), children, max_size=4
        )
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.text(st.characters(exclude_categories=["Cs"]), max_size=8), json_values, max_size=5
    )
)
def test_serialise_parse_round_trip(body: dict[str, Any]) -> None:
    env = envelope(body=body)
    data = env.canonical_bytes()
    assert Envelope.from_canonical_bytes(data) == env
    assert Envelope.from_canonical_bytes(data).canonical_bytes() == data


def test_sign_new_envelope_gives_the_bytes_of_the_validated_path() -> None:
    """The escrow's fast way to sign a reply writes exactly what `new_envelope`,
    `sign_envelope` and `to_wire` write (Ed25519 signatures are deterministic)."""
    key = Ed25519PrivateKey.generate()
    body = {"in_reply_to": "x" * 32, "n": 7, "nested": {"list": [1, "é", None, True]}}
    request_id, wire = sign_new_envelope(
        key,
        type="key-release",
        body=body,
        audience="bob",
        signer=SIGNER,
        now=NOW,
        lifetime=timedelta(days=30),
    )
    parsed = verify_envelope_signature(SignedEnvelope.from_wire(wire), key.public_key())
    assert parsed.request_id == request_id
    again = new_envelope(
        type="key-release",
        body=body,
        audience="bob",
        signer=SIGNER,
        now=NOW,
        lifetime=timedelta(days=30),
        request_id=request_id,
        nonce=base64.b64decode(parsed.nonce),
    )
    assert sign_envelope(again, key).to_wire() == wire
    with pytest.raises(ValueError, match="floats"):
        sign_new_envelope(
            key, type="t", body={"x": 1.5}, audience="bob", signer=SIGNER, now=NOW,
            lifetime=timedelta(days=1),
        )  # fmt: skip


@given(st.binary(max_size=300), st.binary(min_size=64, max_size=64))
def test_the_wire_form_is_parsed_the_same_by_both_ways(payload: bytes, signature: bytes) -> None:
    """`from_wire` takes the canonical form by a pattern and anything else the
    long way: both give the same envelope, and the same bytes back."""
    wire = SignedEnvelope(payload=payload, signature=signature).to_wire()
    assert wire == canonical_json(
        {
            "payload": base64.b64encode(payload).decode(),
            "signature": base64.b64encode(signature).decode(),
            "v": 1,
        }
    )
    assert SignedEnvelope.from_wire(wire) == SignedEnvelope(payload=payload, signature=signature)
    value = parse_canonical_json(wire)
    assert base64.b64decode(value["payload"]) == payload


@pytest.mark.parametrize(
    "wire",
    [
        b'{"payload":"QQ==","signature":"QR==","v":1}',  # stray bits: not canonical base64
        b'{"payload":"QQ=","signature":"QQ==","v":1}',  # bad padding
        b'{"payload":"QQ==","signature":"QQ==","v":01}',
        b'{"payload":"QQ==","signature":"QQ==","v":1} ',
        b'{"signature":"QQ==","payload":"QQ==","v":1}',
    ],
    ids=["stray-bits", "padding", "leading-zero", "trailing-space", "key-order"],
)
def test_near_canonical_wire_forms_are_refused(wire: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        SignedEnvelope.from_wire(wire)
    assert info.value.reason in ("malformed", "not_canonical")

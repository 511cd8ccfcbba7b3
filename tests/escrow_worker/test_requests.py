"""The escrow's checks of signed requests, and replay protection: every refusal
names its reason and records nothing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import SignedEnvelope, new_envelope, sign_envelope
from broker.canonical import canonical_json
from broker.errors import CertificateRejected, CertReason
from broker.pki.identity import Identity
from broker.pki.profile import fingerprint
from escrow_worker import (
    Escrow,
    RequestReason,
    RequestRejected,
    init_escrow,
    open_escrow,
    register_user,
    revoke_user,
)
from escrow_worker.ca.authority import CertificateAuthority, load_ca
from escrow_worker.handlers.auth import VerifiedRequest, authenticate_request
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from escrow_worker.state.replay import ReplayKey, check_and_record, prune
from tests.broker.pki_helpers import ESCROW_PASS, LOG_N, NOW, make_ca, make_identity, snapshot


@dataclass
class Setup:
    escrow: Escrow
    ca: CertificateAuthority
    alice: Identity


@pytest.fixture
async def setup(escrow_location: Location) -> AsyncIterator[Setup]:
    await init_escrow(escrow_location, "acme", ESCROW_PASS, now=NOW, log_n=LOG_N)
    async with open_escrow(escrow_location) as escrow:
        ca = await load_ca(escrow, ESCROW_PASS)
        alice = await register_user(escrow, ca, "alice", groups=(), now=NOW, save=lambda i: None)
        yield Setup(escrow, ca, alice)


def request_bytes(
    identity: Identity, *, now: datetime = NOW, key: Ed25519PrivateKey | None = None, **fields: Any
) -> bytes:
    envelope = new_envelope(
        type="directory.lookup",
        body={"name": "bob"},
        audience=fields.pop("audience", "acme"),
        signer=fields.pop("signer", identity.signer),
        now=now,
        reply_to="inbox.alice",
        **fields,
    )
    return sign_envelope(envelope, key or identity.signing_key).to_wire()


async def accept(s: Setup, data: bytes, now: datetime = NOW) -> VerifiedRequest:
    """What the service does: authenticate (writes nothing), then record the
    request id and nonce in a transaction of its own."""
    request = await s.escrow.store.run(
        lambda tx: authenticate_request(
            tx, data, audience="acme", ca=s.escrow.ca_certificate, now=now
        )
    )
    await s.escrow.store.run(lambda tx: check_and_record(tx, request.replay_key(), now=now))
    return request


async def state(s: Setup) -> object:
    return await s.escrow.store.run(snapshot)


async def test_accepts_a_good_request_once(setup: Setup) -> None:
    data = request_bytes(setup.alice)
    request = await accept(setup, data)
    assert request.sender == "alice"
    assert request.envelope.body == {"name": "bob"}
    with pytest.raises(RequestRejected) as info:
        await accept(setup, data)
    assert info.value.reason is RequestReason.REPLAYED


def _tampered(s: Setup) -> bytes:
    signed = SignedEnvelope.from_wire(request_bytes(s.alice))
    return SignedEnvelope(
        payload=signed.payload.replace(b'"bob"', b'"eve"'), signature=signed.signature
    ).to_wire()


def _resigned_by_other_key(s: Setup) -> bytes:
    return request_bytes(s.alice, key=Ed25519PrivateKey.generate())


def _unknown_signer(s: Setup) -> bytes:
    stranger = make_identity(make_ca("other"), "alice")
    return request_bytes(stranger)


def _encryption_cert_as_signer(s: Setup) -> bytes:
    return request_bytes(s.alice, signer=fingerprint(s.alice.encryption_certificate))


def _not_canonical(s: Setup) -> bytes:
    return request_bytes(s.alice).replace(b",", b", ", 1)


def _payload_not_json(s: Setup) -> bytes:
    payload = base64.b64encode(b"not json").decode()
    return canonical_json({"payload": payload, "signature": "AAAA", "v": 1})


Make = Callable[[Setup], bytes]


@dataclass(frozen=True)
class Bad:
    make: Make
    error: type[Exception]
    reason: object
    now: datetime = NOW


BAD = {
    "tampered": Bad(_tampered, RequestRejected, RequestReason.BAD_SIGNATURE),
    "other-key": Bad(_resigned_by_other_key, RequestRejected, RequestReason.BAD_SIGNATURE),
    "other-escrow": Bad(
        lambda s: request_bytes(s.alice, audience="globex"),
        RequestRejected,
        RequestReason.WRONG_AUDIENCE,
    ),
    "too-old": Bad(
        lambda s: request_bytes(s.alice, now=NOW - timedelta(minutes=8)),
        RequestRejected,
        RequestReason.EXPIRED,
    ),
    "from-future": Bad(
        lambda s: request_bytes(s.alice, now=NOW + timedelta(minutes=3)),
        RequestRejected,
        RequestReason.FROM_FUTURE,
    ),
    "lifetime-too-long": Bad(
        lambda s: request_bytes(s.alice, lifetime=timedelta(hours=1)),
        RequestRejected,
        RequestReason.LIFETIME_TOO_LONG,
    ),
    "unknown-signer": Bad(_unknown_signer, RequestRejected, RequestReason.UNKNOWN_SIGNER),
    "encryption-cert": Bad(_encryption_cert_as_signer, CertificateRejected, CertReason.WRONG_USAGE),
    "not-canonical": Bad(_not_canonical, RequestRejected, RequestReason.MALFORMED),
    "garbage": Bad(lambda s: b"\x00garbage", RequestRejected, RequestReason.MALFORMED),
    "payload-not-json": Bad(_payload_not_json, RequestRejected, RequestReason.MALFORMED),
    "signer-cert-expired": Bad(
        lambda s: request_bytes(s.alice, now=NOW + timedelta(days=366)),
        CertificateRejected,
        CertReason.EXPIRED,
        now=NOW + timedelta(days=366),
    ),
    "signer-cert-not-yet-valid": Bad(
        lambda s: request_bytes(s.alice, now=NOW - timedelta(days=1)),
        CertificateRejected,
        CertReason.NOT_YET_VALID,
        now=NOW - timedelta(days=1),
    ),
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
async def test_refusals_record_nothing(setup: Setup, bad: Bad) -> None:
    data = bad.make(setup)
    before = await state(setup)
    with pytest.raises(bad.error) as info:
        await accept(setup, data, now=bad.now)
    assert info.value.reason == bad.reason  # type: ignore[attr-defined]
    assert await state(setup) == before


async def test_revoked_signer_is_refused_at_once(setup: Setup) -> None:
    data = request_bytes(setup.alice)
    await revoke_user(setup.escrow, setup.ca, "alice", now=NOW)
    before = await state(setup)
    with pytest.raises(CertificateRejected) as info:
        await accept(setup, data)
    assert info.value.reason is CertReason.REVOKED
    assert await state(setup) == before


@pytest.mark.parametrize(
    ("issued", "accepted"),
    [
        (NOW + timedelta(minutes=2), True),  # exactly at the skew limit
        (NOW + timedelta(minutes=2, seconds=1), False),
        (NOW - timedelta(minutes=7), True),  # expired 2 min ago: within skew
        (NOW - timedelta(minutes=7, seconds=1), False),
    ],
    ids=["future-edge", "future-past-edge", "old-edge", "old-past-edge"],
)
async def test_clock_skew_boundaries(setup: Setup, issued: datetime, accepted: bool) -> None:
    data = request_bytes(setup.alice, now=issued)
    if accepted:
        assert (await accept(setup, data)).sender == "alice"
    else:
        with pytest.raises(RequestRejected):
            await accept(setup, data)


async def test_replayed_nonce_with_new_request_id_is_refused(setup: Setup) -> None:
    nonce = bytes(16)
    await accept(setup, request_bytes(setup.alice, nonce=nonce))
    with pytest.raises(RequestRejected) as info:
        await accept(setup, request_bytes(setup.alice, nonce=nonce))
    assert info.value.reason is RequestReason.REPLAYED


async def test_prune_forgets_only_expired_entries(setup: Setup) -> None:
    await accept(setup, request_bytes(setup.alice))
    assert await setup.escrow.store.run(lambda tx: prune(tx, now=NOW)) == 0
    later_on = NOW + timedelta(minutes=8)
    assert await setup.escrow.store.run(lambda tx: prune(tx, now=later_on)) == 1


KEY = ReplayKey("r" * 32, "bm9uY2Vub25jZW5vbmNlMQ==", "ab" * 32, 2_000_000_000)


async def test_check_and_record_joins_the_callers_transaction(setup: Setup) -> None:
    store = setup.escrow.store

    async def record_then_fail(tx: Tx) -> None:
        await check_and_record(tx, KEY, now=NOW)
        raise RuntimeError("the decision failed")

    with pytest.raises(RuntimeError):
        await store.run(record_then_fail)
    assert await store.run(lambda tx: tx.fetchall("SELECT * FROM seen_requests")) == []

    async def record_twice(tx: Tx) -> None:
        await check_and_record(tx, KEY, now=NOW)
        with pytest.raises(RequestRejected):
            await check_and_record(tx, KEY, now=NOW)
        # the refused insert leaves the caller's transaction usable (PostgreSQL too)
        await tx.execute("INSERT INTO escrow_meta (key, value) VALUES ('after', 'ok')")

    await store.run(record_twice)
    rows = await store.run(
        lambda tx: tx.fetchall("SELECT value FROM escrow_meta WHERE key = 'after'")
    )
    assert [tuple(r) for r in rows] == [("ok",)]
    assert len(await store.run(lambda tx: tx.fetchall("SELECT * FROM seen_requests"))) == 1

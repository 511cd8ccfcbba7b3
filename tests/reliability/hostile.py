"""Hostile requests for the bad-input campaigns (tests/reliability and
`bench/reliability.py`): malformed, truncated, bit-flipped, mis-signed, signed
by a stranger, replayed, wrongly addressed, stale, of unknown types, with bodies
that do not fit, and oversize; each with what the escrow must do with it.

Generated from a seeded `random.Random`: the same seed gives the same messages
(the seed is recorded with every figure). Who sends what:

- ``carol`` (registered) sends well-signed requests that must each be refused
  with one typed error to carol, and nothing stored;
- ``mallory`` (registered) has its valid requests mutated in flight: each is
  dead-lettered if it no longer parses, else refused as unauthenticated (to
  mallory, the registered signer it still names) or not answered at all (the
  signer reference itself was changed), and never decides anything;
- ``eve`` holds a certificate of another CA: never answered, nothing sent anywhere.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import MAX_ENVELOPE_BYTES, BrokerError, SignedEnvelope
from broker.pki.identity import Identity
from tests.broker.pki_helpers import make_ca, make_identity
from tests.escrow_worker.helpers import EscrowSetup, request, request_id_of

__all__ = ["KINDS", "Hostile", "HostileMaker", "campaign", "parses"]


@dataclass(frozen=True)
class Hostile:
    kind: str
    data: bytes
    #: The request id it claims (None if it claims none).
    request_id: str | None
    #: Dead-lettered: it does not parse or is oversize; nobody is answered.
    dead: bool
    #: The one error code carol must get for it (strict kinds), else None.
    code: str | None = None
    #: Mutated in flight: refused as unauthenticated or not answered, never decided.
    loose: bool = False
    #: An exact copy of an answered request: the stored reply is sent again.
    replay: bool = False


def parses(data: bytes) -> bool:
    """What the worker's first step decides: can the envelope be read at all?"""
    if len(data) > MAX_ENVELOPE_BYTES:
        return False
    try:
        SignedEnvelope.from_wire(data).unverified()
    except BrokerError:
        return False
    return True


def _claimed_id(data: bytes) -> str | None:
    try:
        return request_id_of(data)
    except Exception:
        return None


class HostileMaker:
    """Makes hostile requests against the escrow of `setup`, at its time `now`.

    `answered` is a lookup by carol that the escrow has answered already (its
    exact bytes are replayed, its request id reused)."""

    def __init__(self, setup: EscrowSetup, rnd: random.Random, now: datetime, answered: bytes):
        self.setup = setup
        self.rnd = rnd
        self.now = now
        self.answered = answered
        self.eve: Identity = make_identity(make_ca("other"), "eve")

    def _carol(self, type_: str, body: object, **kw: object) -> bytes:
        kw.setdefault("now", self.now)
        return request(self.setup["carol"], type_, body, **kw)  # type: ignore[arg-type]

    def _lookup_body(self) -> dict[str, str]:
        return {"name": self.rnd.choice(["alice", "bob", "carol", "mallory"])}

    def _mallory_valid(self) -> bytes:
        return request(self.setup["mallory"], "lookup", self._lookup_body(), now=self.now)

    def _strict(self, kind: str, data: bytes, code: str) -> Hostile:
        return Hostile(kind, data, _claimed_id(data), dead=False, code=code)

    def _by_parse(self, kind: str, data: bytes) -> Hostile:
        ok = parses(data)
        return Hostile(kind, data, _claimed_id(data) if ok else None, dead=not ok, loose=ok)

    # -- the kinds ------------------------------------------------------------------

    def random_bytes(self) -> Hostile:
        return self._by_parse("random bytes", self.rnd.randbytes(self.rnd.randint(0, 2048)))

    def json_not_an_envelope(self) -> Hostile:
        values: list[object] = [
            None,
            self.rnd.randint(-(2**60), 2**60),
            "x" * self.rnd.randint(0, 50),
            [1, 2, {"v": 1}],
            {"payload": "AAAA", "signature": "AAAA", "v": self.rnd.choice([0, 2, "1", True])},
            {"payload": self.rnd.randbytes(12).hex(), "v": 1},
        ]
        data = json.dumps(self.rnd.choice(values)).encode()
        return self._by_parse("JSON, not an envelope", data)

    def truncated(self) -> Hostile:
        valid = self._mallory_valid()
        return self._by_parse("truncated", valid[: self.rnd.randrange(len(valid))])

    def bit_flipped(self) -> Hostile:
        data = bytearray(self._mallory_valid())
        # Distinct bits: one flipped twice is not flipped, and a message whose
        # every flip was undone is the valid request itself.
        for bit in self.rnd.sample(range(len(data) * 8), self.rnd.randint(1, 4)):
            data[bit // 8] ^= 1 << (bit % 8)
        return self._by_parse("bit-flipped", bytes(data))

    def byte_inserted_or_deleted(self) -> Hostile:
        data = bytearray(self._mallory_valid())
        at = self.rnd.randrange(len(data))
        if self.rnd.random() < 0.5:
            del data[at]
        else:
            data.insert(at, self.rnd.randrange(256))
        return self._by_parse("byte inserted or deleted", bytes(data))

    def signature_swapped(self) -> Hostile:
        """A valid payload under the signature of another valid request."""
        one = SignedEnvelope.from_wire(self._mallory_valid())
        two = SignedEnvelope.from_wire(self._mallory_valid())
        forged = SignedEnvelope(payload=one.payload, signature=two.signature)
        return self._by_parse("signature of another request", forged.to_wire())

    def mis_signed(self) -> Hostile:
        data = self._carol("lookup", self._lookup_body(), key=Ed25519PrivateKey.generate())
        return self._strict("signed with another key", data, "unauthenticated")

    def stranger(self) -> Hostile:
        data = request(self.eve, "lookup", self._lookup_body(), now=self.now)
        return Hostile("signed by another CA", data, _claimed_id(data), dead=False)

    def wrong_audience(self) -> Hostile:
        audience = self.rnd.choice(["globex", "acme2", "ACME", "a" * 60])
        data = self._carol("lookup", self._lookup_body(), audience=audience)
        return self._strict("addressed to another escrow", data, "unauthenticated")

    def reply_to_another(self) -> Hostile:
        other = self.rnd.choice(["alice", "bob", "mallory"])
        data = self._carol("lookup", self._lookup_body(), reply_to=other)
        return self._strict("reply_to someone else", data, "unauthenticated")

    def stale(self) -> Hostile:
        choice = self.rnd.randrange(3)
        if choice == 0:  # expired
            data = self._carol("lookup", self._lookup_body(), now=self.now - timedelta(hours=1))
        elif choice == 1:  # from the future
            data = self._carol("lookup", self._lookup_body(), now=self.now + timedelta(hours=1))
        else:  # living too long
            data = self._carol("lookup", self._lookup_body(), lifetime=timedelta(days=2))
        return self._strict("expired, future or too long-lived", data, "stale")

    def unknown_type(self) -> Hostile:
        if self.rnd.random() < 0.5:
            type_ = self.rnd.choice(["frobnicate", "key-release", "event", "deposit-receipt"])
            data = self._carol(type_, self._lookup_body())
        else:
            data = self._carol("lookup", self._lookup_body(), version=self.rnd.randint(2, 9))
        return self._strict("unknown type or version", data, "unknown_type")

    def body_does_not_fit(self) -> Hostile:
        bodies: list[dict[str, object]] = [
            {},
            {"name": 7},
            {"name": "bob", "extra": self.rnd.randint(0, 9)},
            {"consignment_id": "zz", "consignment_digest": "00"},
            {"name": "x" * self.rnd.randint(300, 3000)},
        ]
        type_ = self.rnd.choice(["lookup", "key-request", "deposit", "revoke", "status"])
        data = self._carol(type_, self.rnd.choice(bodies))
        return self._strict("a body that does not fit", data, "malformed")

    def reused_request_id(self) -> Hostile:
        rid = request_id_of(self.answered)
        data = self._carol("lookup", {"name": "mallory"}, request_id=rid)
        return self._strict("request id reused for other bytes", data, "replayed")

    def replayed(self) -> Hostile:
        return Hostile(
            "exact replay", self.answered, request_id_of(self.answered), False, replay=True
        )

    def oversize(self) -> Hostile:
        valid = self._mallory_valid()
        pad = b" " * (MAX_ENVELOPE_BYTES - len(valid) + self.rnd.randint(1, 65536))
        return Hostile("oversize", valid + pad, None, dead=True)


#: The kinds, with how often each comes in a campaign (oversize messages are
#: a megabyte each: rarer).
KINDS: Final[dict[str, tuple[Callable[[HostileMaker], Hostile], int]]] = {
    "random bytes": (HostileMaker.random_bytes, 10),
    "JSON, not an envelope": (HostileMaker.json_not_an_envelope, 5),
    "truncated": (HostileMaker.truncated, 10),
    "bit-flipped": (HostileMaker.bit_flipped, 15),
    "byte inserted or deleted": (HostileMaker.byte_inserted_or_deleted, 10),
    "signature of another request": (HostileMaker.signature_swapped, 5),
    "signed with another key": (HostileMaker.mis_signed, 5),
    "signed by another CA": (HostileMaker.stranger, 5),
    "addressed to another escrow": (HostileMaker.wrong_audience, 5),
    "reply_to someone else": (HostileMaker.reply_to_another, 5),
    "expired, future or too long-lived": (HostileMaker.stale, 5),
    "unknown type or version": (HostileMaker.unknown_type, 5),
    "a body that does not fit": (HostileMaker.body_does_not_fit, 5),
    "request id reused for other bytes": (HostileMaker.reused_request_id, 3),
    "exact replay": (HostileMaker.replayed, 3),
    "oversize": (HostileMaker.oversize, 1),
}


def campaign(maker: HostileMaker, count: int) -> list[Hostile]:
    """`count` hostile requests, kinds drawn by weight from `maker.rnd`; every
    kind at least once when `count` allows."""
    names = list(KINDS)
    weights = [KINDS[n][1] for n in names]
    chosen = names[:count] + maker.rnd.choices(names, weights, k=max(count - len(names), 0))
    maker.rnd.shuffle(chosen)
    return [KINDS[name][0](maker) for name in chosen]

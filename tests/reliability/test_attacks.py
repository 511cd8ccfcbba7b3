"""Split-key attacks with everything one party gets, on both store backends:

- the escrow operator: its database and files, its private keys, its master
  keyring and passphrase (every stored part decrypted), and every message that
  went through the broker;
- the broker (or anyone on the wire): every message it carried, and the
  consignment itself.

Each collects every byte string it can find (every base64 field of every
message and envelope, every stored value, every part it can decrypt, and a
seeded sample of the 32-byte windows of those short enough to be a key or a
sealed key), tries each as the escrow's part with every private key it holds
(and a fresh one), and opens nothing; bob's private key appears nowhere in what
either holds.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from broker import (
    InProcessBroker,
    InProcessTransport,
    KeyRelease,
    Message,
    Mode,
    SignedEnvelope,
    TransportConfig,
)
from broker.transport.base import Destination
from client import OpenError, unseal
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    deposit_body,
    escrow_encryption_key,
    escrow_keyring,
    everything_held,
    key_request_body,
    make_escrow,
    request,
    running_worker,
    seal_for,
)

#: Windows tried per attacker, besides every exact 32-byte value.
WINDOWS = 50


class _Tapped(InProcessTransport):
    """An in-process transport that keeps a copy of every body it carries."""

    def __init__(self, config: TransportConfig, broker: InProcessBroker, tap: list[bytes]):
        super().__init__(config, broker=broker)
        self._tap = tap

    async def _publish(self, destination: Destination, message: Message) -> None:
        self._tap.append(message.body)
        await super()._publish(destination, message)


def _blobs(value: Any, out: set[bytes]) -> None:
    """Every byte string reachable from a message: base64 fields decoded,
    signed envelopes opened (their payload is canonical JSON), recursively."""
    if isinstance(value, dict):
        for item in value.values():
            _blobs(item, out)
    elif isinstance(value, list):
        for item in value:
            _blobs(item, out)
    elif isinstance(value, str):
        out.add(value.encode())
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return
        if raw and raw not in out:
            out.add(raw)
            _blobs_of_bytes(raw, out)


def _blobs_of_bytes(data: bytes, out: set[bytes]) -> None:
    out.add(data)
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return
    _blobs(parsed, out)


def _candidates(blobs: set[bytes]) -> set[bytes]:
    """32-byte values an attacker would try as the escrow's part: each blob of
    that size, and every 32-byte window of blobs the size of a sealed key part
    or less (HPKE: 32 bytes of encapsulated key, the part, a 16-byte tag)."""
    exact = {b for b in blobs if len(b) == 32}
    windows = {blob[i : i + 32] for blob in blobs if len(blob) <= 96 for i in range(len(blob) - 31)}
    # Every exact one, and a seeded sample of the windows (each try is a whole
    # open: the suite stays fast; the sample is the same every run).
    sample = random.Random(15).sample(sorted(windows - exact), min(WINDOWS, len(windows - exact)))
    return exact | set(sample)


def _raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _opens_nothing(
    setup: EscrowSetup,
    consignment: bytes,
    deposit: Any,
    identities: list[X25519PrivateKey],
    candidates: set[bytes],
) -> int:
    tried = 0
    for identity in identities:
        for part in candidates:
            release = KeyRelease(
                consignment_id=deposit.consignment_id,
                mode=Mode.SPLIT,
                escrow=deposit.policy.escrow,
                policy_digest=deposit.policy_digest,
                key_part=part,
            )
            with pytest.raises(OpenError):
                unseal(
                    io.BytesIO(consignment),
                    io.BytesIO(),
                    identity=identity,
                    release=release,
                    sender_key=setup["alice"].signing_key.public_key(),
                )
            tried += 1
    return tried


async def test_neither_the_escrow_operator_nor_the_broker_opens_a_split_key_consignment(
    escrow_location: Location, tmp_path: Path
) -> None:
    setup = await make_escrow(escrow_location)
    consignment, deposit = seal_for(setup["alice"], [setup["bob"]], mode=Mode.SPLIT)
    broker, config, tap = InProcessBroker(), TransportConfig(prefix="tap"), []

    async def transport() -> _Tapped:
        made = _Tapped(config, broker, tap)
        await made.start()
        return made

    async with await setup.open_service() as service, running_worker(service, await transport()):
        alice = await Agent(setup, setup["alice"], await transport()).start()
        bob = await Agent(setup, setup["bob"], await transport()).start()
        await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
        release = await bob.ask(request(setup["bob"], "key-request", key_request_body(deposit)))
        assert release.type == "key-release"
        # The consignment itself travels through the broker too (any channel may carry it).
        tap.append(consignment)

    # What the broker carried.
    carried: set[bytes] = set()
    for body in tap:
        _blobs_of_bytes(body, carried)
        try:
            _blobs_of_bytes(SignedEnvelope.from_wire(body).payload, carried)
        except Exception:  # noqa: S112 (the consignment is not an envelope)
            continue
    # What the operator holds besides: every stored value, every part its
    # master keyring decrypts, its own private key.
    held: set[bytes] = set(carried)
    everything = await everything_held(setup)
    for chunk in everything.split(b"\n"):
        _blobs_of_bytes(chunk, held)
    ring = await escrow_keyring(setup)
    rows = await setup.run(
        lambda tx: tx.fetchall("SELECT consignment_id, part_key_id, part FROM deposits")
    )
    for cid, key_id, blob in rows:
        _blobs_of_bytes(ring.decrypt(str(key_id), str(cid), bytes(blob)), held)
    escrow_key = await escrow_encryption_key(setup)

    bob_private = _raw(setup["bob"].encryption_key)
    for what in (carried, held):
        assert not any(bob_private in blob for blob in what)
        assert not any(base64.b64encode(bob_private) in blob for blob in what)
    assert bob_private not in everything

    stranger = X25519PrivateKey.generate()
    broker_tries = _opens_nothing(setup, consignment, deposit, [stranger], _candidates(carried))
    operator_candidates = _candidates(held)
    operator_tries = _opens_nothing(
        setup, consignment, deposit, [escrow_key, stranger], operator_candidates
    )
    # The operator does hold the escrow's part (K2) itself: it is among its
    # candidates, and still opens nothing without bob's key.
    assert any(len(b) == 32 for b in operator_candidates)
    assert broker_tries > 20
    assert operator_tries > broker_tries

"""The security claim: everything the escrow holds (its database, its private
keys, its master keys, every part decrypted) does not open a sealed consignment.
The client is used here only to seal and to try to open."""

from __future__ import annotations

import base64
import io
import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from broker import KeyRelease, Mode
from broker.messages import KeyReleaseBody
from client import OpenError, unseal
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    Agent,
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
from tests.support import TransportFactory


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@pytest.mark.parametrize("mode", [Mode.SPLIT, Mode.ESCROWED])
async def test_everything_the_escrow_holds_opens_nothing(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory, mode: Mode
) -> None:
    setup = await make_escrow(escrow_location)
    consignment, deposit = seal_for(setup["alice"], [setup["bob"]], mode=mode)
    worker_transport = await transport_factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        alice = await Agent(setup, setup["alice"], await transport_factory()).start()
        bob = await Agent(setup, setup["bob"], await transport_factory()).start()
        await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
        reply = await bob.ask(request(setup["bob"], "key-request", key_request_body(deposit)))
        assert isinstance(reply.body, KeyReleaseBody)

    # The escrow's own X25519 key, and every 32-byte value it can reach: the
    # parts decrypted with its master keys, and what it released.
    escrow_key = await escrow_encryption_key(setup)
    ring = await escrow_keyring(setup)
    held: set[bytes] = set()
    rows = await setup.run(
        lambda tx: tx.fetchall("SELECT consignment_id, part_key_id, part FROM deposits")
    )
    for cid, key_id, blob in rows:
        part = json.loads(ring.decrypt(str(key_id), str(cid), bytes(blob)))
        if part["escrow_key"] is not None:
            held.add(base64.b64decode(part["escrow_key"]))
        held.update(base64.b64decode(v) for v in part["wrapped_keys"].values())
    # The escrow does hold its part, exactly what was deposited ...
    deposited = set(deposit.wrapped_keys.values()) if deposit.wrapped_keys else set()
    if deposit.escrow_key is not None:
        deposited.add(deposit.escrow_key)
    assert deposited
    assert held == deposited
    candidates = held | {reply.body.sealed_key_part}

    # ... but never the receiver's private key, in any file or row ...
    everything = await everything_held(setup)
    bob_private = _raw_private(setup["bob"].encryption_key)
    assert bob_private not in everything
    assert base64.b64encode(bob_private) not in everything

    # ... and with its own key in the receiver's place, nothing opens.
    identities = [escrow_key, X25519PrivateKey.generate()]
    for identity, part in itertools.product(identities, candidates):
        release = KeyRelease(
            consignment_id=deposit.consignment_id,
            mode=mode,
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

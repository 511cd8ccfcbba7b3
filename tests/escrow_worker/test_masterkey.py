"""The master key: parts at rest are never the key in clear, rotation re-encrypts
them while a worker keeps serving, and a wrong passphrase opens nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker import Deposit, Mode, open_key_part
from broker.errors import IdentityFileError
from broker.messages import KeyReleaseBody, MessageType
from escrow_worker import EscrowService, rotate_master_key
from escrow_worker.ca.operator import open_escrow
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import KEYRING, Rotation
from tests.broker.pki_helpers import ESCROW_PASS, NOW, tree
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    deposit_body,
    escrow_keyring,
    eventually,
    everything_held,
    full_snapshot,
    key_request_body,
    make_escrow,
    request,
    running_worker,
    seal_for,
)
from tests.support import TransportFactory


@dataclass
class World:
    setup: EscrowSetup
    service: EscrowService
    alice: Agent
    bob: Agent

    async def deposit(self, mode: Mode = Mode.SPLIT) -> Deposit:
        _, deposit = seal_for(self.setup["alice"], [self.setup["bob"]], mode=mode)
        reply = await self.alice.ask(
            request(self.setup["alice"], "deposit", deposit_body(self.setup, deposit))
        )
        assert reply.type == MessageType.DEPOSIT_RECEIPT, reply.body
        return deposit

    async def release(self, deposit: Deposit) -> bytes:
        reply = await self.bob.ask(
            request(self.setup["bob"], "key-request", key_request_body(deposit))
        )
        assert isinstance(reply.body, KeyReleaseBody), reply.body
        if deposit.mode is Mode.ESCROWED:
            return reply.body.sealed_key_part
        return open_key_part(
            reply.body.sealed_key_part,
            self.setup["bob"].encryption_key,
            deposit.consignment_id,
            reply.body.policy_digest,
        )


@pytest.fixture
async def world(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> AsyncIterator[World]:
    setup = await make_escrow(escrow_location)
    worker_transport = await transport_factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        alice = await Agent(setup, setup["alice"], await transport_factory()).start()
        bob = await Agent(setup, setup["bob"], await transport_factory()).start()
        yield World(setup, service, alice, bob)


async def unsent(setup: EscrowSetup) -> int:
    sql = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"
    return int(await setup.run(lambda tx: tx.fetchval(sql)))


async def escrow_file(setup: EscrowSetup, name: str) -> bytes | None:
    """One of the escrow's key files, wherever its backend keeps them."""
    async with open_escrow(setup.location) as escrow:
        return await escrow.keystore.read(name)


async def rotate(setup: EscrowSetup, passphrase: bytes = ESCROW_PASS) -> Rotation:
    async with open_escrow(setup.location) as escrow:
        return await rotate_master_key(escrow.store, escrow.keystore, passphrase, now=NOW)


async def parts(setup: EscrowSetup) -> list[tuple[str, bytes]]:
    rows = await setup.run(lambda tx: tx.fetchall("SELECT part_key_id, part FROM deposits"))
    return [(str(k), bytes(p)) for k, p in rows]


def forms(secret: bytes) -> list[bytes]:
    return [secret, base64.b64encode(secret), secret.hex().encode()]


async def test_parts_at_rest_are_not_the_keys(world: World) -> None:
    split = await world.deposit(Mode.SPLIT)
    escrowed = await world.deposit(Mode.ESCROWED)
    assert split.escrow_key is not None
    everything = await everything_held(world.setup)
    for secret in [split.escrow_key, *escrowed.wrapped_keys.values()]:
        for form in forms(secret):
            assert form not in everything
    # ... yet they are there, encrypted, and released intact.
    assert await world.release(split) == split.escrow_key
    bob_key = split.policy.receivers[0].key_id.hex()
    assert await world.release(escrowed) == escrowed.wrapped_keys[bob_key]


async def test_a_part_moved_to_another_consignment_does_not_decrypt(world: World) -> None:
    first, second = await world.deposit(), await world.deposit()

    async def swap(tx: Tx) -> None:
        rows = {
            str(cid): bytes(part)
            for cid, part in await tx.fetchall("SELECT consignment_id, part FROM deposits")
        }
        await tx.execute(
            "UPDATE deposits SET part = ? WHERE consignment_id = ?",
            (rows[second.consignment_id], first.consignment_id),
        )

    await world.setup.run(swap)
    reply = await world.bob.ask(request(world.setup["bob"], "key-request", key_request_body(first)))
    assert reply.code == "internal"
    released = await world.setup.run(lambda tx: tx.fetchval("SELECT COUNT(*) FROM releases"))
    assert released == 0
    assert await world.release(second) == second.escrow_key  # the other one is intact


async def test_rotation_reencrypts_and_a_running_worker_keeps_releasing(world: World) -> None:
    setup = world.setup
    before = await world.deposit()
    old_ring = await escrow_keyring(setup)
    old_parts = await parts(setup)

    rotation = await rotate(setup)

    assert rotation.reencrypted == 1
    assert rotation.retired == tuple(sorted(old_ring.keys))
    new_ring = await escrow_keyring(setup)
    assert set(new_ring.keys) == {rotation.key_id}
    new_parts = await parts(setup)
    assert [r[0] for r in new_parts] == [rotation.key_id]
    assert new_parts[0][1] != old_parts[0][1]
    # The worker still holds only the old key: it reloads the keyring and releases.
    assert await world.release(before) == before.escrow_key
    # A new deposit is stored under the new key, and released.
    after = await world.deposit()
    assert {key_id for key_id, _ in await parts(setup)} == {rotation.key_id}
    assert await world.release(after) == after.escrow_key
    everything = await everything_held(setup)
    for form in forms(before.escrow_key or b""):
        assert form not in everything


async def test_rotation_with_a_wrong_passphrase_changes_nothing(world: World) -> None:
    await world.deposit()
    setup = world.setup
    await eventually(lambda: unsent(setup), 0)
    files = tree(setup.directory) if setup.location.directory else {}
    rows = await full_snapshot(setup)
    with pytest.raises(IdentityFileError) as info:
        await rotate(setup, b"not the passphrase")
    assert info.value.reason == "wrong_passphrase"
    assert await full_snapshot(setup) == rows
    if setup.location.directory:
        after = tree(setup.directory)
        lock = "escrow.db.master-key-rotation.lock"
        assert {k: v for k, v in after.items() if k != lock} == {
            k: v for k, v in files.items() if k != lock
        }


async def test_a_wrong_passphrase_opens_no_service(
    escrow_location: Location, tmp_path: Path
) -> None:
    setup = await make_escrow(escrow_location)
    with pytest.raises(IdentityFileError) as info:
        await EscrowService.open(setup.location, b"not the passphrase", clock=setup.clock)
    assert info.value.reason == "wrong_passphrase"
    assert await escrow_file(setup, KEYRING) is None


async def test_keyring_is_sealed_like_the_escrow_keys(
    escrow_location: Location, tmp_path: Path
) -> None:
    setup = await make_escrow(escrow_location)
    service = await setup.open_service()
    await service.close()
    sealed = await escrow_file(setup, KEYRING)
    assert sealed is not None
    header = json.loads(sealed)
    signing = json.loads(await escrow_file(setup, "signing.key") or b"")
    assert header["format"] == "consign-sealed"
    assert header["kind"] == "escrow-master-keyring"
    assert header["kdf"]["log_n"] == signing["kdf"]["log_n"]
    if setup.location.directory is not None:
        assert (setup.directory / KEYRING).stat().st_mode & 0o077 == 0
    ring = await escrow_keyring(setup)
    for key in ring.keys.values():
        assert not any(form in repr(ring).encode() for form in forms(key))
        assert str(list(key)) not in repr(ring)
    # A second service on the same escrow uses the same keyring.
    again = await setup.open_service()
    await again.close()
    assert (await escrow_keyring(setup)).keys == ring.keys

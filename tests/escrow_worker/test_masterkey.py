"""The master key: parts at rest are never the key in clear, rotation re-encrypts
them while a worker keeps serving, and a wrong passphrase opens nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import pytest

from broker import Deposit, Mode, open_key_part
from broker.errors import IdentityFileError
from broker.messages import KeyReleaseBody, MessageType
from escrow_worker import EscrowService, rotate_master_key
from escrow_worker.state.masterkey import KEYRING_FILE, read_keyring
from tests.broker.pki_helpers import ESCROW_PASS, NOW, tree
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    deposit_body,
    eventually,
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
async def world(tmp_path: Path, transport_factory: TransportFactory) -> AsyncIterator[World]:
    setup = await make_escrow(tmp_path / "escrow")
    worker_transport = await transport_factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        alice = await Agent(setup, setup["alice"], await transport_factory()).start()
        bob = await Agent(setup, setup["bob"], await transport_factory()).start()
        yield World(setup, service, alice, bob)


async def unsent(directory: Path) -> int:
    async with aiosqlite.connect(directory / "escrow.db") as conn:
        sql = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"
        rows = list(await conn.execute_fetchall(sql))
    return int(rows[0][0])


def escrow_bytes(directory: Path) -> bytes:
    """Every byte of every file in the escrow directory (database, WAL, keys)."""
    return b"".join(tree(directory).values())


def forms(secret: bytes) -> list[bytes]:
    return [secret, base64.b64encode(secret), secret.hex().encode()]


async def test_parts_at_rest_are_not_the_keys(world: World) -> None:
    split = await world.deposit(Mode.SPLIT)
    escrowed = await world.deposit(Mode.ESCROWED)
    assert split.escrow_key is not None
    everything = escrow_bytes(world.setup.directory)
    for secret in [split.escrow_key, *escrowed.wrapped_keys.values()]:
        for form in forms(secret):
            assert form not in everything
    # ... yet they are there, encrypted, and released intact.
    assert await world.release(split) == split.escrow_key
    bob_key = split.policy.receivers[0].key_id.hex()
    assert await world.release(escrowed) == escrowed.wrapped_keys[bob_key]


async def test_a_part_moved_to_another_consignment_does_not_decrypt(world: World) -> None:
    first, second = await world.deposit(), await world.deposit()
    async with aiosqlite.connect(world.setup.directory / "escrow.db") as conn:
        rows = dict(
            (str(cid), bytes(part))
            for cid, part in await conn.execute_fetchall(
                "SELECT consignment_id, part FROM deposits"
            )
        )
        await conn.execute(
            "UPDATE deposits SET part = ? WHERE consignment_id = ?",
            (rows[second.consignment_id], first.consignment_id),
        )
        await conn.commit()
    reply = await world.bob.ask(request(world.setup["bob"], "key-request", key_request_body(first)))
    assert reply.code == "internal"
    async with aiosqlite.connect(world.setup.directory / "escrow.db") as conn:
        released = list(await conn.execute_fetchall("SELECT COUNT(*) FROM releases"))
    assert released == [(0,)]
    assert await world.release(second) == second.escrow_key  # the other one is intact


async def test_rotation_reencrypts_and_a_running_worker_keeps_releasing(world: World) -> None:
    directory = world.setup.directory
    before = await world.deposit()
    old_ring = read_keyring(directory, ESCROW_PASS)
    async with aiosqlite.connect(directory / "escrow.db") as conn:
        old_parts = list(await conn.execute_fetchall("SELECT part_key_id, part FROM deposits"))

    rotation = await rotate_master_key(directory, ESCROW_PASS, now=NOW)

    assert rotation.reencrypted == 1
    assert rotation.retired == tuple(sorted(old_ring.keys))
    new_ring = read_keyring(directory, ESCROW_PASS)
    assert set(new_ring.keys) == {rotation.key_id}
    async with aiosqlite.connect(directory / "escrow.db") as conn:
        new_parts = list(await conn.execute_fetchall("SELECT part_key_id, part FROM deposits"))
    assert [r[0] for r in new_parts] == [rotation.key_id]
    assert new_parts[0][1] != old_parts[0][1]
    # The worker still holds only the old key: it reloads the keyring and releases.
    assert await world.release(before) == before.escrow_key
    # A new deposit is stored under the new key, and released.
    after = await world.deposit()
    async with aiosqlite.connect(directory / "escrow.db") as conn:
        ids = {r[0] for r in await conn.execute_fetchall("SELECT part_key_id FROM deposits")}
    assert ids == {rotation.key_id}
    assert await world.release(after) == after.escrow_key
    for form in forms(before.escrow_key or b""):
        assert form not in escrow_bytes(directory)


async def test_rotation_with_a_wrong_passphrase_changes_nothing(world: World) -> None:
    await world.deposit()
    directory = world.setup.directory
    await eventually(lambda: unsent(directory), 0)
    files, rows = tree(directory), await full_snapshot(directory)
    with pytest.raises(IdentityFileError) as info:
        await rotate_master_key(directory, b"not the passphrase", now=NOW)
    assert info.value.reason == "wrong_passphrase"
    assert await full_snapshot(directory) == rows
    after = tree(directory)
    assert {k: v for k, v in after.items() if k != "master.lock"} == {
        k: v for k, v in files.items() if k != "master.lock"
    }


async def test_a_wrong_passphrase_opens_no_service(tmp_path: Path) -> None:
    setup = await make_escrow(tmp_path / "escrow")
    with pytest.raises(IdentityFileError) as info:
        await EscrowService.open(setup.directory, b"not the passphrase", clock=setup.clock)
    assert info.value.reason == "wrong_passphrase"
    assert not (setup.directory / KEYRING_FILE).exists()


async def test_keyring_is_sealed_like_the_escrow_keys(tmp_path: Path) -> None:
    setup = await make_escrow(tmp_path / "escrow")
    service = await setup.open_service()
    await service.close()
    header = json.loads((setup.directory / KEYRING_FILE).read_bytes())
    signing = json.loads((setup.directory / "signing.key").read_bytes())
    assert header["format"] == "consign-sealed"
    assert header["kind"] == "escrow-master-keyring"
    assert header["kdf"]["log_n"] == signing["kdf"]["log_n"]
    assert (setup.directory / KEYRING_FILE).stat().st_mode & 0o077 == 0
    ring = read_keyring(setup.directory, ESCROW_PASS)
    for key in ring.keys.values():
        assert not any(form in repr(ring).encode() for form in forms(key))
        assert str(list(key)) not in repr(ring)
    # A second service on the same directory uses the same keyring.
    again = await setup.open_service()
    await again.close()
    assert read_keyring(setup.directory, ESCROW_PASS).keys == ring.keys

"""A reply that decided nothing never settles an agent's request (docs/protocol.md,
"Decisions"): the agent keeps the request open and asks again with the same
bytes, so a forged copy of a key request raced ahead of the real one cannot
burn the receiver's release.

The escrow answers what it cannot authenticate with an `unauthenticated` error
to the inbox the request claims; anyone who sees bob's request in flight and
can publish to the escrow's queue can make it do so, about bob's request id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from broker import Message, Transport
from broker.canonical import b64, canonical_json, unb64
from broker.deposit import ControlAttributes
from broker.messages import ErrorCode, MessageType, error_reply
from broker.transport.base import ESCROW, Destination
from client import EscrowRefused, ReceiverAgent, SenderAgent
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, World, make_world
from tests.support import TransportFactory

WAIT = 10.0


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path, ("alice", "bob"))


@pytest.fixture
async def escrow(world: World, transport_factory: TransportFactory) -> AsyncIterator[WorkerRunner]:
    async with WorkerRunner(world, await transport_factory()) as runner:
        yield runner


async def _sealed(world: World, transport: Transport, root: Path, **attrs: int) -> str:
    (root / "r.txt").write_bytes(b"the figures\n")
    async with SenderAgent(world.identities["alice"], transport, ESCROW_NAME, root / "alice") as a:
        sealed = await a.seal(
            [root / "r.txt"],
            root / "r.consignment",
            to=["bob"],
            attributes=ControlAttributes(**attrs),
        )
    return sealed.consignment_id


def _forged_copy(wire: bytes) -> bytes:
    """The same envelope with one signature byte flipped: it still parses, so
    the escrow answers it (unauthenticated) instead of dead-lettering it."""
    outer = json.loads(wire)
    signature = bytearray(unb64(outer["signature"]))
    signature[0] ^= 0x01
    outer["signature"] = b64(bytes(signature))
    return canonical_json(outer)


async def _until(check: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"waited {WAIT} s for {what}")


async def _requests(bob: ReceiverAgent) -> list[str]:
    rows = await bob.store.fetchall("SELECT request_id FROM requests WHERE type = 'key-request'")
    return [r["request_id"] for r in rows]


async def test_a_forged_copy_raced_ahead_does_not_burn_the_release(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    cid = await _sealed(world, transport, tmp_path, max_releases=1)
    bob = ReceiverAgent(world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob")
    real_publish = transport.publish
    raced: list[str] = []

    async def answered(request_id: str) -> bool:
        # The escrow's answer to the forgery reached bob's agent, however it filed it.
        tables = {r["name"] for r in await bob.store.fetchall("SELECT name FROM sqlite_master")}
        sql = "SELECT 1 FROM requests WHERE request_id = ? AND reply_type IS NOT NULL"
        if "nondecisions" in tables:
            sql += " UNION ALL SELECT 1 FROM nondecisions WHERE request_id = ?"
        params = (request_id,) * sql.count("?")
        return bool(await bob.store.fetchall(sql, params))

    async def racing(destination: Destination, message: Message) -> None:
        if destination == ESCROW and message.type == "key-request.v1" and not raced:
            raced.append(message.message_id)
            forged = Message(
                body=_forged_copy(message.body), message_id=message.message_id, type=message.type
            )
            await real_publish(ESCROW, forged)
            await _until(lambda: answered(message.message_id), "the forgery's answer")
        await real_publish(destination, message)

    transport.publish = racing  # type: ignore[method-assign]
    try:
        async with bob:
            opened = await bob.open(tmp_path / "r.consignment", tmp_path / "out")
            assert (tmp_path / "out" / "r.txt").read_bytes() == b"the figures\n"
            assert await _requests(bob) == raced  # one request, its bytes sent again
            second = await bob.open(tmp_path / "r.consignment", tmp_path / "out2")
            assert second.released_at == opened.released_at  # the stored release
    finally:
        transport.publish = real_publish  # type: ignore[method-assign]
    async with SenderAgent(
        world.identities["alice"], transport, ESCROW_NAME, tmp_path / "alice"
    ) as alice:
        status = await alice.status(cid)
        assert [r.releases for r in status.receivers] == [1]


async def _pending(bob: ReceiverAgent) -> str:
    await _until(lambda: _requests(bob), "bob's key request")
    (request_id,) = await _requests(bob)
    return request_id


async def _send_error(world: World, transport: Transport, request_id: str, code: ErrorCode) -> None:
    body = error_reply(
        in_reply_to=request_id,
        code=code,
        message=f"{code.value} (sent by the test as the escrow)",
        request_type=MessageType.KEY_REQUEST.value,
    )
    await world.forger().send(transport, "bob", MessageType.ERROR, body)


@pytest.mark.parametrize("code", [ErrorCode.UNAUTHENTICATED, ErrorCode.INTERNAL])
async def test_a_passing_non_decision_keeps_the_request_waiting_for_the_decision(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path, code: ErrorCode
) -> None:
    await _sealed(world, transport, tmp_path)
    async with ReceiverAgent(
        world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob", resend_after=0.5
    ) as bob:
        await escrow.stop()  # bob's request waits in the queue
        opening = asyncio.create_task(bob.open(tmp_path / "r.consignment", tmp_path / "out"))
        request_id = await _pending(bob)
        await _send_error(world, transport, request_id, code)
        await asyncio.sleep(0.5)
        assert not opening.done()  # the non-decision settled nothing
        await escrow.start()
        await opening
        assert await _requests(bob) == [request_id]


@pytest.mark.parametrize("code", [ErrorCode.UNAUTHENTICATED, ErrorCode.INTERNAL])
async def test_at_the_timeout_the_last_non_decision_is_said_and_the_request_kept(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path, code: ErrorCode
) -> None:
    await _sealed(world, transport, tmp_path)
    async with ReceiverAgent(
        world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob", reply_timeout=2.0
    ) as bob:
        await escrow.stop()
        opening = asyncio.create_task(bob.open(tmp_path / "r.consignment", tmp_path / "out"))
        request_id = await _pending(bob)
        await _send_error(world, transport, request_id, code)
        with pytest.raises(EscrowRefused) as refused:
            await opening
        assert refused.value.code == code.value
        assert refused.value.hint is not None
        assert "the same request" in refused.value.hint
        await escrow.start()
        await bob.open(tmp_path / "r.consignment", tmp_path / "out")
        assert await _requests(bob) == [request_id]  # asked again with the same bytes


@pytest.mark.parametrize("code", [ErrorCode.STALE, ErrorCode.MALFORMED, ErrorCode.UNKNOWN_TYPE])
async def test_a_non_decision_final_for_these_bytes_ends_the_wait_but_settles_nothing(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path, code: ErrorCode
) -> None:
    await _sealed(world, transport, tmp_path)
    async with ReceiverAgent(
        world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob"
    ) as bob:
        await escrow.stop()
        opening = asyncio.create_task(bob.open(tmp_path / "r.consignment", tmp_path / "out"))
        request_id = await _pending(bob)
        await _send_error(world, transport, request_id, code)
        with pytest.raises(EscrowRefused) as refused:
            async with asyncio.timeout(WAIT):  # well before the reply timeout
                await opening
        assert refused.value.code == code.value
        row = await bob.store.request(request_id)
        assert row is not None
        assert row["reply_type"] is None  # not settled
        await escrow.start()
        await bob.open(tmp_path / "r.consignment", tmp_path / "out")
        assert await _requests(bob) == [request_id]  # the same bytes, decided now


async def test_replayed_burns_the_request_id_and_a_new_request_is_made(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    """`replayed`: the escrow holds another signer's decision under this id (a
    squatter's); the same bytes can never be decided, so asking again makes a
    new request."""
    await _sealed(world, transport, tmp_path)
    async with ReceiverAgent(
        world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob"
    ) as bob:
        await escrow.stop()
        opening = asyncio.create_task(bob.open(tmp_path / "r.consignment", tmp_path / "out"))
        request_id = await _pending(bob)
        await _send_error(world, transport, request_id, ErrorCode.REPLAYED)
        with pytest.raises(EscrowRefused) as refused:
            await opening
        assert refused.value.code == "replayed"
        await escrow.start()
        await bob.open(tmp_path / "r.consignment", tmp_path / "out")
        first, second = await _requests(bob)
        assert first == request_id != second

"""The agents end to end against the real escrow worker, on both transports.

The whole story (alice -> bob and carol, both sealing modes), revocation, a lost
reply recovered by re-sending the same request, and the agents' own refusals of
messages that do not check: a tampered chunk, a reply not signed by the escrow,
a reply to a request never sent, a key release for another consignment.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import Inbox, Message, SignedEnvelope, Transport
from broker.canonical import canonical_json
from broker.deposit import ControlAttributes, Mode
from broker.errors import QueueNotFound
from broker.messages import EventBody, EventKind, KeyReleaseBody, LookupReplyBody, MessageType
from client import (
    AgentError,
    EscrowRefused,
    NoReply,
    OpenError,
    ReceiverAgent,
    SealError,
    SenderAgent,
)
from client.agent.chunks import Chunk, chunk_wire
from client.consignment import consignment_digest
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, World, make_world
from tests.support import TransportFactory

CONTENT = b"the quarterly numbers, in confidence\n" * 40000  # ~1.4 MiB: 3 chunks
WAIT = 10.0


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path)


@pytest.fixture
async def escrow(world: World, transport_factory: TransportFactory) -> AsyncIterator[WorkerRunner]:
    async with WorkerRunner(world, await transport_factory()) as runner:
        yield runner


def sender(world: World, transport: Transport, root: Path, **kw: float) -> SenderAgent:
    return SenderAgent(world.identities["alice"], transport, ESCROW_NAME, root / "alice", **kw)


def receiver(
    world: World, transport: Transport, root: Path, name: str, **kw: float
) -> ReceiverAgent:
    return ReceiverAgent(world.identities[name], transport, ESCROW_NAME, root / name, **kw)


async def seal_report(
    alice: SenderAgent,
    root: Path,
    to: list[str],
    mode: Mode = Mode.SPLIT,
    name: str = "r",
    content: bytes = CONTENT,
) -> str:
    source = root / f"{name}.txt"
    source.write_bytes(content)
    sealed = await alice.seal([source], root / f"{name}.consignment", to=to, mode=mode)
    return sealed.consignment_id


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds; the agents' state lives in SQLite, with no
    event to wait on from outside."""
    try:
        async with asyncio.timeout(WAIT):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"waited {WAIT} s for {what}")


@pytest.mark.parametrize("mode", [Mode.SPLIT, Mode.ESCROWED])
async def test_whole_story_two_receivers(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path, mode: Mode
) -> None:
    async with (
        sender(world, transport, tmp_path) as alice,
        receiver(world, transport, tmp_path, "bob") as bob,
        receiver(world, transport, tmp_path, "carol") as carol,
    ):
        (tmp_path / "report.txt").write_bytes(CONTENT)
        sealed = await alice.seal(
            [tmp_path / "report.txt"], tmp_path / "r.consignment", to=["bob", "carol"], mode=mode
        )
        cid = sealed.consignment_id
        receipt = sealed.receipt
        assert (receipt.consignment_id, receipt.sender) == (cid, "alice")
        assert sorted(receipt.receivers) == ["bob", "carol"]
        assert receipt.consignment_digest == consignment_digest(tmp_path / "r.consignment")
        assert SignedEnvelope.from_wire(receipt.signed).unverified().type == "deposit-receipt"

        sent = await alice.send(cid)
        assert (sent.chunks, sorted(sent.receivers)) == (3, ["bob", "carol"])
        for agent in (bob, carol):
            inbox = await agent.fetch()
            (note,) = inbox.notifications
            assert (note.consignment_id, note.sender) == (cid, "alice")
            assert note.consignment_digest == sealed.consignment_digest
            (arrived,) = inbox.received
            assert (arrived.state, arrived.chunks_received) == ("complete", 3)
            assert arrived.path is not None
            assert arrived.path.read_bytes() == (tmp_path / "r.consignment").read_bytes()
            opened = await agent.open(cid, tmp_path / f"out-{agent.name}")
            assert (opened.sender, opened.mode) == ("alice", mode)
            assert (tmp_path / f"out-{agent.name}" / "report.txt").read_bytes() == CONTENT

        async def all_events() -> bool:
            await alice.sync(idle=0.2)
            return len(await alice.events(cid)) >= 5

        await eventually(all_events, "five events")
        events = await alice.events(cid)
        assert Counter((e.kind, e.receiver) for e in events) == Counter(
            {
                ("deposited", None): 1,
                ("notified", "bob"): 1,
                ("notified", "carol"): 1,
                ("released", "bob"): 1,
                ("released", "carol"): 1,
            }
        )
        status = await alice.status(cid)
        assert {r.name: r.releases for r in status.receivers} == {"bob": 1, "carol": 1}


async def test_a_window_already_over_is_refused_before_sealing(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with sender(world, transport, tmp_path) as alice:
        (tmp_path / "w.txt").write_bytes(CONTENT)
        now = int(alice.now().timestamp())
        with pytest.raises(SealError, match="release window is already over"):
            await alice.seal(
                [tmp_path / "w.txt"],
                tmp_path / "w.consignment",
                to=["bob"],
                attributes=ControlAttributes(not_after=now - 1),
            )
        assert not (tmp_path / "w.consignment").exists()
        assert await alice.events() == []  # nothing deposited


async def test_revocation_before_release_denies_with_reason_and_event(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with (
        sender(world, transport, tmp_path) as alice,
        receiver(world, transport, tmp_path, "bob") as bob,
        receiver(world, transport, tmp_path, "carol") as carol,
    ):
        cid = await seal_report(alice, tmp_path, ["bob", "carol"])
        revoked = await alice.revoke(cid, ["bob"])
        assert (revoked.revoked, revoked.already_revoked) == (("bob",), ())
        assert revoked.releases == {"bob": 0}
        again = await alice.revoke(cid, ["bob"])
        assert (again.revoked, again.already_revoked) == (("bob",), ("bob",))
        with pytest.raises(EscrowRefused) as refused:
            await bob.open(tmp_path / "r.consignment", tmp_path / "out-bob")
        assert refused.value.code == "revoked"
        assert refused.value.hint is not None
        assert "revoked" in refused.value.hint
        assert not (tmp_path / "out-bob").exists()
        opened = await carol.open(tmp_path / "r.consignment", tmp_path / "out-carol")
        assert [f.name for f in opened.files] == ["r.txt"]

        async def denied() -> bool:
            await alice.sync(idle=0.2)
            return any(e.kind == "denied" for e in await alice.events(cid))

        await eventually(denied, "the denied event")
        kinds = {(e.kind, e.receiver): e.reason for e in await alice.events(cid)}
        assert ("revoked", "bob") in kinds
        assert "revoked" in str(kinds[("denied", "bob")])
        assert ("released", "carol") in kinds
        status = await alice.status(cid)
        bob_state = next(r for r in status.receivers if r.name == "bob")
        assert (bob_state.releases, bob_state.revoked_at is not None) == (0, True)


async def test_lost_reply_is_recovered_by_resending_the_same_request(
    world: World,
    escrow: WorkerRunner,
    transport: Transport,
    transport_factory: TransportFactory,
    tmp_path: Path,
) -> None:
    async with sender(world, transport, tmp_path) as alice:
        cid = await seal_report(alice, tmp_path, ["bob"])
    bob_transport = await transport_factory()
    first = receiver(world, bob_transport, tmp_path, "bob", reply_timeout=0.5, resend_after=5)
    async with first:
        await escrow.stop()
        with pytest.raises(NoReply, match="no reply from escrow") as no_reply:
            await first.open(tmp_path / "r.consignment", tmp_path / "out")
        request_id = no_reply.value.request_id
        assert no_reply.value.hint is not None
        assert "the same request is sent again" in no_reply.value.hint
    # bob's agent is gone when the escrow answers: the reply is lost on the way.
    await escrow.start()
    queue = bob_transport.config.inbox_queue("bob")
    lost: list[str] = []
    async with asyncio.timeout(WAIT):
        while "key-release" not in lost:
            delivery = await bob_transport.get(queue, timeout=1)
            if delivery is not None:
                lost.append(SignedEnvelope.from_wire(delivery.body).unverified().type)
                await delivery.ack()
    # bob asks again: the same signed bytes go out, the escrow answers from its store.
    async with receiver(world, transport, tmp_path, "bob") as bob:
        opened = await bob.open(tmp_path / "r.consignment", tmp_path / "out")
        assert (tmp_path / "out" / "r.txt").read_bytes() == CONTENT
        rows = await bob.store.fetchall(
            "SELECT request_id, sent FROM requests WHERE type = 'key-request'"
        )
        assert [(r["request_id"], r["sent"] >= 2) for r in rows] == [(request_id, True)]
        assert opened.consignment_id == cid
    async with sender(world, transport, tmp_path) as alice:
        status = await alice.status(cid)
        assert [r.releases for r in status.receivers] == [1]


async def test_open_by_id_reads_the_inbox_first(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    """`open ID` right after the sender's `send`, with no `fetch` between."""
    async with sender(world, transport, tmp_path) as alice:
        cid = await seal_report(alice, tmp_path, ["bob"])
        async with receiver(world, transport, tmp_path, "bob") as bob:
            await alice.send(cid)
            opened = await bob.open(cid, tmp_path / "out")
            assert opened.consignment_id == cid
            assert (tmp_path / "out" / "r.txt").read_bytes() == CONTENT


async def test_a_file_whose_id_was_damaged_is_the_one_open_error(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    """The id comes from the unauthenticated header: an id the escrow does not
    know, that no notification announced, is what OpenError says (damaged,
    altered, or of another escrow); the escrow's refusal is its cause."""
    async with sender(world, transport, tmp_path) as alice:
        cid = await seal_report(alice, tmp_path, ["bob"])
    data = (tmp_path / "r.consignment").read_bytes()
    other = cid[:-1] + ("0" if cid[-1] != "0" else "1")
    assert data.count(cid.encode()) >= 1
    damaged = tmp_path / "damaged.consignment"
    damaged.write_bytes(data.replace(cid.encode(), other.encode(), 1))
    async with receiver(world, transport, tmp_path, "bob") as bob:
        with pytest.raises(OpenError) as refused:
            await bob.open(damaged, tmp_path / "out")
        assert str(refused.value) == OpenError.MESSAGE
        assert "at this escrow" in OpenError.MESSAGE
        cause = refused.value.__cause__
        assert isinstance(cause, EscrowRefused)
        assert cause.code == "unknown_consignment"
        assert not (tmp_path / "out").exists()


async def test_an_agent_waits_for_the_first_worker_and_says_when_there_is_none(
    world: World, transport: Transport, transport_factory: TransportFactory, tmp_path: Path
) -> None:
    """Agents do not declare the escrow's queues (their broker accounts need no
    rights there): with no worker ever started, a request fails with an error
    that says so; a worker that starts while the agent waits answers it."""
    lonely = sender(world, transport, tmp_path / "first", reply_timeout=0.6)
    with pytest.raises(AgentError, match="no escrow worker has started on this broker") as err:
        await lonely.start()
    assert err.value.hint is not None
    assert "consign escrow worker" in err.value.hint
    with pytest.raises(QueueNotFound):  # and the agent did not declare it
        await transport.get(transport.config.escrow_queue)

    async def late_worker() -> WorkerRunner:
        await asyncio.sleep(0.7)
        runner = WorkerRunner(world, await transport_factory())
        return await runner.__aenter__()

    starting = asyncio.create_task(late_worker())
    try:
        async with sender(world, transport, tmp_path / "second") as alice:
            cid = await seal_report(alice, tmp_path, ["bob"])
            assert (await alice.status(cid)).consignment_id == cid
    finally:
        runner = await starting
        await runner.__aexit__(None, None, None)


def tamper(wire: bytes) -> bytes:
    """Flip the first character of the chunk's data, keeping the signature."""
    signed = SignedEnvelope.from_wire(wire)
    envelope = json.loads(signed.payload)
    data = envelope["body"]["data"]
    envelope["body"]["data"] = ("B" if data[0] == "A" else "A") + data[1:]
    return SignedEnvelope(payload=canonical_json(envelope), signature=signed.signature).to_wire()


async def publish_raw(transport: Transport, to: str, wire: bytes, message_id: str) -> None:
    await transport.declare_inbox(to)
    await transport.publish(Inbox(to), Message(body=wire, message_id=message_id, type="x.v1"))


async def test_tampered_and_inconsistent_chunks_are_refused(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    alice_id = world.identities["alice"]
    async with sender(world, transport, tmp_path) as alice:
        cid = await seal_report(alice, tmp_path, ["bob"], content=b"one small chunk\n")
    path = tmp_path / "r.consignment"
    data = path.read_bytes()
    digest = consignment_digest(path)
    common = {"receiver": "bob", "consignment_id": cid, "digest": digest}
    now = datetime.now(UTC)
    _, good = chunk_wire(alice_id, **common, size=len(data), count=1, chunk=Chunk(0, data), now=now)
    await publish_raw(transport, "bob", tamper(good), "tampered-chunk-1")
    _, liar = chunk_wire(  # signed by alice, but not the bytes of the digest she signs
        alice_id, **common, size=len(data), count=1, chunk=Chunk(0, b"x" * len(data)), now=now
    )
    await publish_raw(transport, "bob", liar, "inconsistent-chunk-1")
    async with receiver(world, transport, tmp_path, "bob") as bob:
        inbox = await bob.fetch()
        reasons = {(r.type, r.reason) for r in inbox.refused}
        assert ("consignment-chunk", "bad_signature") in reasons
        assert ("consignment-chunk", "digest_mismatch") in reasons
        (state,) = inbox.received
        assert (state.state, state.path) == ("failed", None)
        assert not (tmp_path / "bob" / "received" / f"{cid}.consignment").exists()
        with pytest.raises(AgentError, match="is failed"):
            await bob.open(cid, tmp_path / "out")
        # the genuine chunks still arrive and are kept
        await publish_raw(transport, "bob", good, "good-chunk-1")
        inbox = await bob.fetch()
        (state,) = inbox.received
        assert state.state == "complete"
        await bob.open(cid, tmp_path / "out")
        assert (tmp_path / "out" / "r.txt").read_bytes() == b"one small chunk\n"


async def pending_key_request(bob: ReceiverAgent) -> str:
    async def found() -> bool:
        return (
            await bob.store.fetchone("SELECT 1 FROM requests WHERE type = 'key-request'")
            is not None
        )

    await eventually(found, "the key request")
    row = await bob.store.fetchone("SELECT request_id FROM requests WHERE type = 'key-request'")
    assert row is not None
    return str(row["request_id"])


async def refused(bob: ReceiverAgent, reason: str, count: int = 1) -> list[str]:
    """Wait until `count` messages were refused for `reason`; all reasons so far."""

    async def seen() -> bool:
        return [r.reason for r in (await bob.inbox()).refused].count(reason) >= count

    await eventually(seen, f"{count} refusal(s): {reason}")
    return [r.reason for r in (await bob.inbox()).refused]


async def test_replies_that_do_not_check_are_refused_and_the_real_one_used(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    forger = world.forger()
    carol = world.identities["carol"]
    async with sender(world, transport, tmp_path) as alice:
        cid = await seal_report(alice, tmp_path, ["bob"])
        other = await seal_report(alice, tmp_path, ["bob"], name="other")
    async with receiver(world, transport, tmp_path, "bob", reply_timeout=30) as bob:
        await escrow.stop()
        opening = asyncio.create_task(bob.open(tmp_path / "r.consignment", tmp_path / "out"))
        request_id = await pending_key_request(bob)
        release = KeyReleaseBody(
            in_reply_to=request_id,
            consignment_id=cid,
            mode=Mode.SPLIT,
            policy_digest=bytes(32),
            sealed_key_part=bytes(80),
            sender="alice",
            consignment_digest=consignment_digest(tmp_path / "r.consignment"),
            released_at=0,
        )
        # 1. signed by carol, a registered party, not by the escrow
        await forger.send(
            transport,
            "bob",
            MessageType.KEY_RELEASE,
            release,
            key=carol.signing_key,
            signer=carol.signer,
        )
        await refused(bob, "not_from_escrow")
        # 2. signed by the escrow, answering a request bob never sent; the unsigned
        #    correlation id names bob's real request and must not count
        stray = release.model_copy(update={"in_reply_to": "f" * 32})
        await forger.send(
            transport, "bob", MessageType.KEY_RELEASE, stray, correlation_id=request_id
        )
        await refused(bob, "unexpected_reply")
        # 3. signed by the escrow, for bob's request, but another consignment's release
        wrong = release.model_copy(
            update={
                "consignment_id": other,
                "consignment_digest": consignment_digest(tmp_path / "other.consignment"),
            }
        )
        await forger.send(transport, "bob", MessageType.KEY_RELEASE, wrong)
        await refused(bob, "wrong_consignment")
        # 4. signed by the escrow, for bob's request, but the wrong kind of reply
        lookup = LookupReplyBody(
            in_reply_to=request_id,
            name="bob",
            signing_certificate="x",
            encryption_certificate="x",
            crl=b"x",
        )
        await forger.send(transport, "bob", MessageType.LOOKUP_REPLY, lookup)
        reasons = await refused(bob, "unexpected_reply", count=2)
        assert sorted(reasons) == [
            "not_from_escrow",
            "unexpected_reply",
            "unexpected_reply",
            "wrong_consignment",
        ]
        assert not opening.done()
        assert not (tmp_path / "out").exists()
        # the escrow comes back: the real release opens it
        await escrow.start()
        opened = await opening
        assert opened.consignment_id == cid
        assert (tmp_path / "out" / "r.txt").read_bytes() == CONTENT


async def test_bad_input_is_refused_and_changes_nothing(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with sender(world, transport, tmp_path) as alice:
        (tmp_path / "a.txt").write_text("a")
        with pytest.raises(EscrowRefused) as unknown:
            await alice.seal([tmp_path / "a.txt"], tmp_path / "a.consignment", to=["mallory"])
        assert unknown.value.code == "unknown_user"
        assert not (tmp_path / "a.consignment").exists()
        assert await alice.store.fetchall("SELECT * FROM sent") == []
        with pytest.raises(EscrowRefused) as unknown_cosigner:  # co-signers are registered
            await alice.seal(
                [tmp_path / "a.txt"],
                tmp_path / "a.consignment",
                to=["bob"],
                attributes=ControlAttributes(cosigners=("zed",)),
            )
        assert unknown_cosigner.value.code == "unknown_user"
        assert not (tmp_path / "a.consignment").exists()
        assert await alice.store.fetchall("SELECT * FROM sent") == []
        with pytest.raises(AgentError, match="sealed no consignment"):
            await alice.send("0" * 32)
        with pytest.raises(EscrowRefused) as unknown_cid:
            await alice.status("0" * 32)
        assert unknown_cid.value.code == "unknown_consignment"
        cid = await seal_report(alice, tmp_path, ["bob"])
    damaged = tmp_path / "damaged.consignment"
    data = bytearray((tmp_path / "r.consignment").read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    async with receiver(world, transport, tmp_path, "bob") as bob:
        with pytest.raises(AgentError, match="has not arrived"):
            await bob.open(cid, tmp_path / "out")
        with pytest.raises(AgentError, match="no consignment file"):
            await bob.open(tmp_path / "missing.consignment", tmp_path / "out")
        with pytest.raises(OpenError) as mismatch:  # the one message for an altered file
            await bob.open(damaged, tmp_path / "out")
        assert isinstance(mismatch.value.__cause__, EscrowRefused)
        assert mismatch.value.__cause__.code == "digest_mismatch"
        assert not (tmp_path / "out").exists()
        async with receiver(world, transport, tmp_path, "carol") as carol:
            with pytest.raises(EscrowRefused) as stranger:
                await carol.open(tmp_path / "r.consignment", tmp_path / "out")
            assert stranger.value.code == "not_a_receiver"
    async with sender(world, transport, tmp_path) as alice:
        status = await alice.status(cid)
        assert [(r.name, r.releases) for r in status.receivers] == [("bob", 0)]


async def test_events_arriving_together_are_filed_together_and_a_bad_one_alone(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    """More events than one page of the spool at once (the inbox files a page's
    events and notifications in one transaction): every good one is filed once,
    the forged one among them is refused on its own, nothing stays spooled."""
    forger = world.forger()
    carol = world.identities["carol"]
    async with sender(world, transport, tmp_path) as alice:
        cid = await seal_report(alice, tmp_path, ["bob"], content=b"one line\n")
        await escrow.stop()  # only what is sent below arrives from now on
        for at in range(1, 71):
            body = EventBody(consignment_id=cid, kind=EventKind.REVOKED, receiver="bob", at=at)
            if at == 33:
                await forger.send(
                    transport, "alice", MessageType.EVENT, body,
                    key=carol.signing_key, signer=carol.signer,
                )  # fmt: skip
            else:
                await forger.send(transport, "alice", MessageType.EVENT, body)

        async def filed() -> bool:
            revoked = [e for e in await alice.events(cid) if e.kind == EventKind.REVOKED]
            return len(revoked) == 69

        await eventually(filed, "69 events filed")
        await refused_as(alice, "not_from_escrow")
        revoked = [e.at for e in await alice.events(cid) if e.kind == EventKind.REVOKED]
        assert sorted(revoked) == [at for at in range(1, 71) if at != 33]
        assert await alice.store.fetchall("SELECT seq FROM spool") == []


async def refused_as(agent: SenderAgent, reason: str) -> None:
    async def seen() -> bool:
        return reason in [r.reason for r in (await agent.inbox()).refused]

    await eventually(seen, f"a refusal: {reason}")

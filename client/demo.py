"""The whole story on one machine: `consign demo`.

A throwaway escrow (its CA and SQLite database in a temporary directory),
alice, bob, carol and dave registered with cheap scrypt costs, the real escrow worker
and the real agents, on the in-process transport (no server) or on RabbitMQ
when a URL is given. Each step is reported through `say(step, text)`. This
module must never touch anything outside its temporary directory (on RabbitMQ:
a queue prefix of its own run, deleted at the end). It is the only client module
that uses `escrow_worker`, and imports it only when the demo runs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker import (
    ControlAttributes,
    Mode,
    ReceiverAttributes,
    Transport,
    TransportConfig,
    connect_transport,
)
from broker.pki.identity import Identity
from broker.pki.profile import fingerprint
from client.agent import Attested, CosignerAgent, ReceiverAgent, SenderAgent
from client.errors import EscrowRefused

__all__ = ["DemoResult", "run_demo"]

ESCROW = "demo-escrow"
DEMO_PREFIX = "consign-demo"
_log = logging.getLogger(__name__)
#: The cheapest scrypt cost the readers accept: these keys live for seconds.
_LOG_N = 14
_PASSPHRASE = b"demo passphrase, thrown away at the end"
_CONTRACT = "Alice sells Bob one consignment engine, delivery in March.\n"

Say = Callable[[str, str], None]


@dataclass(frozen=True)
class DemoResult:
    consignment_id: str
    opened_text: str
    denied_code: str
    #: Why bob's first request was held (every co-signer must sign first).
    held_code: str = ""
    #: Who co-signed, and whose verified receipt the sender holds.
    cosigned_by: tuple[str, ...] = ()
    receipts_verified: tuple[str, ...] = ()


async def _register(escrow_dir: Path, names: tuple[str, ...]) -> dict[str, Identity]:
    from escrow_worker import load_ca, open_escrow, register_user

    now = datetime.now(UTC) - timedelta(minutes=1)
    identities: dict[str, Identity] = {}
    async with open_escrow(escrow_dir) as esc:
        ca = await load_ca(esc, _PASSPHRASE)
        for name in names:
            identities[name] = await register_user(
                esc, ca, name, groups=(), now=now, save=lambda _identity: None
            )
    return identities


async def run_demo(workdir: Path, say: Say, *, amqp_url: str | None = None) -> DemoResult:
    """Run the story in `workdir` (which must be empty), reporting each step."""
    # The one place the client uses the escrow's package, and only when run.
    from escrow_worker import EscrowService, EscrowWorker, init_escrow

    escrow_dir = workdir / "escrow"
    certs = await init_escrow(
        escrow_dir, ESCROW, _PASSPHRASE, now=datetime.now(UTC) - timedelta(minutes=1), log_n=_LOG_N
    )
    people = await _register(escrow_dir, ("alice", "bob", "carol", "dave"))
    say(
        "register",
        f"escrow {ESCROW!r} created (CA {fingerprint(certs.ca)[:16]}...); "
        "alice, bob, carol and dave registered, each with a signing and an encryption "
        "certificate",
    )
    # Never the queues of a real deployment, nor of another demo running at the
    # same time: a prefix of this run's own, deleted at the end.
    prefix = f"{DEMO_PREFIX}-{uuid.uuid4().hex[:8]}" if amqp_url else "demo"
    config = TransportConfig(prefix=prefix)
    where = f"RabbitMQ (queue prefix {prefix})" if amqp_url else "the in-process transport"
    async with (
        connect_transport(amqp_url, config) as transport,
        await EscrowService.open(escrow_dir, _PASSPHRASE) as service,
    ):
        stop = asyncio.Event()
        worker = asyncio.create_task(EscrowWorker(service, transport).run(stop))
        say("worker", f"escrow worker running on {where}, state in SQLite")
        try:
            return await _story(workdir, say, transport, people)
        finally:
            stop.set()
            await worker
            if amqp_url:
                await _delete_topology(amqp_url, config, people)


async def _delete_topology(url: str, config: TransportConfig, people: dict[str, Identity]) -> None:
    """Delete the run's queues and exchanges from RabbitMQ (best effort: what
    cannot be deleted is left, prefixed, for the operator)."""
    import aio_pika  # only over RabbitMQ

    queues = [config.escrow_queue, config.dead_letter_queue]
    queues += [config.inbox_queue(name) for name in people]
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for queue in queues:
                await channel.queue_delete(queue)
            for exchange in (config.inbox_exchange, config.dead_letter_exchange):
                await channel.exchange_delete(exchange)
    except (aio_pika.exceptions.AMQPError, OSError) as exc:
        _log.warning("could not delete the demo's queues (prefix %s): %s", config.prefix, exc)


async def _proofs(alice: SenderAgent, cid: str, count: int) -> list[Attested]:
    """The receipts and co-signatures alice kept, once `count` have come (or 10 s)."""
    proofs: list[Attested] = []
    for _ in range(20):
        await alice.sync(idle=0.2, timeout=5.0)
        proofs = await alice.attestations(cid)
        if len(proofs) >= count:
            break
    return proofs


async def _story(
    workdir: Path, say: Say, transport: Transport, people: dict[str, Identity]
) -> DemoResult:
    agents = workdir / "agents"
    alice = SenderAgent(people["alice"], transport, ESCROW, agents / "alice")
    bob = ReceiverAgent(people["bob"], transport, ESCROW, agents / "bob")
    carol = ReceiverAgent(people["carol"], transport, ESCROW, agents / "carol")
    dave = CosignerAgent(people["dave"], transport, ESCROW, agents / "dave")
    contract = workdir / "contract.txt"
    await asyncio.to_thread(contract.write_text, _CONTRACT)
    async with alice, bob, carol, dave:
        sealed = await alice.seal(
            [contract],
            workdir / "contract.consignment",
            to=["bob", "carol"],
            mode=Mode.SPLIT,
            attributes=ControlAttributes(cosigners=("dave",)),
            receiver_attributes={"bob": ReceiverAttributes(receipt_required=True)},
        )
        cid = sealed.consignment_id
        say(
            "seal",
            f"alice seals contract.txt for bob and carol (split key: K1 in the file, "
            f"K2 for the escrow): consignment {cid}, {sealed.consignment_size} bytes; "
            "her conditions: bob signs a receipt first, dave must co-sign",
        )
        say(
            "deposit",
            f"the escrow keeps K2 and signs a receipt: deposited for "
            f"{', '.join(sealed.receipt.receivers)}, digest {sealed.consignment_digest[:16]}...",
        )
        sent = await alice.send(cid)
        say(
            "deliver",
            f"alice sends the file in {sent.chunks} signed chunk(s) to the inboxes of "
            f"{' and '.join(sent.receivers)} (the escrow never sees it)",
        )
        inbox = await bob.fetch()
        arrived = [r for r in inbox.received if r.consignment_id == cid and r.state == "complete"]
        notified = [n for n in inbox.notifications if n.consignment_id == cid]
        say(
            "inbox",
            f"bob's inbox: {len(notified)} notification from the escrow, the consignment "
            f"{'arrived and matches its digest' if arrived else 'is missing'}",
        )
        say(
            "request",
            "bob asks the escrow for the key part (a signed key-request); it wants his "
            "signed receipt first, which his agent signs (id, digest, policy digest) and sends",
        )
        try:
            await bob.open(cid, workdir / "bob-opened")
        except EscrowRefused as exc:
            held = exc.code
            say("held", f"the escrow holds the key part back ({exc.code}): {exc.reason}")
        else:  # pragma: no cover - the escrow must wait for the co-signer
            raise AssertionError("the escrow released before every co-signer signed")
        agreement = await dave.agreement(cid)
        signed = await dave.cosign(agreement)
        cosigned = tuple(c.name for c in signed.cosigners if c.signed_at is not None)
        say(
            "cosign",
            f"dave reads the agreement (sender {agreement.sender}, receivers "
            f"{', '.join(r.name for r in agreement.policy.receivers)}, policy digest "
            f"{agreement.policy_digest.hex()[:16]}... recomputed) and co-signs; "
            f"signed so far: {', '.join(cosigned)}",
        )
        opened = await bob.open(cid, workdir / "bob-opened")
        say(
            "release",
            "bob asks again: the escrow checks his certificate, his receipt, the co-signature "
            "and alice's conditions, and releases K2, sealed to bob's key and signed",
        )
        text = (
            await asyncio.to_thread((workdir / "bob-opened" / "contract.txt").read_text)
        ).strip()
        say("open", f"bob opens {opened.files[0].name}: {text!r}")
        proofs = await _proofs(alice, cid, 2)
        verified = tuple(f"{p.kind.value} of {p.signer}" for p in proofs if p.verified)
        say(
            "receipt",
            f"alice holds, each verified against her CA: {', '.join(verified) or 'nothing'} "
            "(proof of delivery and of agreement)",
        )
        revoked = await alice.revoke(cid, ["carol"])
        say("revoke", f"alice revokes the consignment for {', '.join(revoked.revoked)}")
        await carol.fetch()
        try:
            await carol.open(cid, workdir / "carol-opened")
        except EscrowRefused as exc:
            denied = exc.code
            say(
                "denied",
                f"carol asks for the key part: the escrow refuses ({exc.code}): {exc.reason}",
            )
        else:  # pragma: no cover - the escrow must refuse
            raise AssertionError("the escrow released a revoked consignment")
        await alice.sync()
        told = ", ".join(
            f"{e.kind}{' ' + e.receiver if e.receiver else ''}"
            f"{' (' + e.reason + ')' if e.reason else ''}"
            for e in await alice.events(cid)
        )
        say("events", f"alice was told: {told}")
        status = await alice.status(cid)
        say(
            "status",
            "; ".join(
                f"{r.name}: released {r.releases}x"
                + (", receipt given" if r.receipt_at is not None else "")
                + (", revoked" if r.revoked_at is not None else "")
                for r in status.receivers
            )
            + "; co-signed by "
            + ", ".join(c.name for c in status.cosigners if c.signed_at is not None),
        )
    receipts = tuple(p.signer for p in proofs if p.verified and p.kind.value == "receipt")
    return DemoResult(cid, text, denied, held, cosigned, receipts)

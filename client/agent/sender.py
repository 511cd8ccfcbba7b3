"""The sender's agent: seal and deposit, send, revoke, ask for status, and list
the receipts and co-signatures that came.

`SenderAgent.seal` looks up the receivers, seals the files (in a worker thread)
and deposits the key part at the escrow, checking its signed receipt against
the deposit; `send` publishes the file as signed chunks to the receivers'
inboxes, many in flight; `revoke` and `status` are signed requests;
`attestations` verifies the receivers' receipts and the co-signatures kept. This module
must never send a consignment whose deposit the escrow refused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from broker import seal_deposit
from broker.attest import StatementKind
from broker.deposit import ControlAttributes, Deposit, Mode, ReceiverAttributes
from broker.errors import Unroutable
from broker.messages import (
    DepositBody,
    DepositReceiptBody,
    EventBody,
    EventKind,
    MessageType,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
)
from broker.transport.base import Inbox, Message
from client.agent import attest, bulk, verify
from client.agent.chunks import Chunk, chunk_count, chunk_size, chunk_wire, read_chunks
from client.agent.core import Agent
from client.agent.inputs import (
    check_attributes,
    is_consignment_id,
    require_consignment_id,
    require_file,
    require_name,
)
from client.agent.types import (
    Attested,
    ConsignmentStatus,
    Cosigner,
    Party,
    Receipt,
    ReceiverState,
    Revoked,
    Sealed,
    Sent,
)
from client.consignment import (
    Progress,
    Recipient,
    Sender,
    Source,
    consignment_digest,
    inspect,
    seal_async,
)
from client.errors import AgentError, ClientError, EscrowRefused, NoReply, UntrustedMessage

#: Chunk publishes awaiting their broker confirm at once.
_IN_FLIGHT = 8
#: The event that carries each kind of signed statement to the sender.
_EVENT_OF = {
    StatementKind.RECEIPT.value: EventKind.RECEIPT.value,
    StatementKind.AGREEMENT.value: EventKind.COSIGNED.value,
}


class SenderAgent(Agent):
    """Seals and deposits consignments, sends them, revokes, asks for status, and
    keeps the escrow's events about them.

    `identity` is a complete identity (`client.load_identity`), `transport` a
    started `broker.Transport`, `escrow` the escrow's name (its certificate's
    CN), `state_dir` where this agent keeps its state (one per identity).
    Use as ``async with SenderAgent(...) as agent:``.
    """

    async def seal(
        self,
        inputs: Sequence[Path | str | Source],
        output: Path | str,
        *,
        to: Sequence[str],
        mode: Mode = Mode.SPLIT,
        attributes: ControlAttributes | None = None,
        progress: Progress | None = None,
        receiver_attributes: Mapping[str, ReceiverAttributes] | None = None,
    ) -> Sealed:
        """Look up the receivers, seal `inputs` into `output` and deposit the key
        part at the escrow; returns once the escrow's signed receipt is checked.
        `receiver_attributes` gives receivers conditions of their own (each
        field given replaces the policy-wide one for that receiver). If the
        escrow refuses the deposit, `output` is removed again (nobody could
        open it); on `NoReply` it stays, as the deposit may have landed.
        Contradictory attributes are refused before anything is looked up."""
        names = list(dict.fromkeys(to))
        if not names:
            raise AgentError("no receiver given", "name at least one receiver (--to NAME)")
        own = dict(receiver_attributes or {})
        check_attributes(attributes, own, names, now=self._ts())
        parties = await asyncio.gather(*(self.lookup(name) for name in names))
        escrow = await self.escrow_party()
        path = Path(await asyncio.to_thread(os.path.abspath, output))
        deposit = await seal_async(
            inputs,
            path,
            sender=Sender(self.name, self.identity.signing_key),
            receivers=[Recipient(p.name, p.encryption_key, own.get(p.name)) for p in parties],
            escrow=self.escrow,
            mode=mode,
            attributes=attributes,
            progress=progress,
        )
        try:
            receipt = await self._deposit(deposit, escrow)
            sealed = Sealed(
                consignment_id=deposit.consignment_id,
                path=path,
                mode=mode,
                receivers=tuple(names),
                consignment_digest=deposit.consignment_digest,
                consignment_size=deposit.consignment_size,
                receipt=receipt,
            )
            await self.store.record_sealed(sealed, deposit.sealed_at)
        except (EscrowRefused, UntrustedMessage):
            # Refused: a file whose key part nobody holds opens for no one.
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C, SIGTERM) before the seal was recorded: no
            # consignment is left. A deposit that landed anyway holds the key
            # part of a file nobody has, and sealing again makes a new one.
            path.unlink(missing_ok=True)  # noqa: ASYNC240 (no await while cancelled)
            raise
        return sealed

    async def seal_many(
        self,
        jobs: Sequence[bulk.SealJob],
        *,
        mode: Mode = Mode.SPLIT,
        attributes: ControlAttributes | None = None,
        progress: bulk.BatchProgress | None = None,
    ) -> list[bulk.ItemResult]:
        """Seal and deposit many consignments, one per `SealJob`, in `batch`
        requests; a result per job, in order. A missing input file refuses the
        whole run before anything is sealed; a receiver that cannot be looked up,
        or a deposit the escrow refuses, fails that item only. The same jobs again
        (after a crash) resume: nothing is sealed or deposited twice."""
        return await bulk.seal_many(self, jobs, mode=mode, attributes=attributes, progress=progress)

    async def send_many(
        self, results: Sequence[bulk.ItemResult], *, progress: bulk.BatchProgress | None = None
    ) -> list[bulk.ItemResult]:
        """Send every consignment `seal_many` deposited to its receivers; a
        result per item (one that cannot be sent fails: `not_sent`)."""
        return await bulk.send_many(self, results, progress=progress)

    async def revoke_many(
        self,
        consignment_ids: Sequence[str],
        receivers: Sequence[str] = (),
        *,
        progress: bulk.BatchProgress | None = None,
    ) -> list[bulk.ItemResult]:
        """Revoke many consignments (for `receivers`; empty: all) in `batch`
        requests; a result per consignment."""
        return await bulk.revoke_many(self, consignment_ids, receivers, progress=progress)

    async def _deposit(self, deposit: Deposit, escrow: Party) -> Receipt:
        sealed = seal_deposit(deposit, escrow.encryption_key)
        _, body, wire, request_id = await self.request(
            MessageType.DEPOSIT,
            DepositBody(consignment_id=deposit.consignment_id, sealed_deposit=sealed),
            subject=deposit.consignment_id,
            reuse=True,
        )
        assert isinstance(body, DepositReceiptBody)
        expected = (
            deposit.consignment_id,
            self.name,
            deposit.consignment_digest,
            deposit.plaintext_commitment,
            deposit.policy_digest,
            sorted(r.name for r in deposit.policy.receivers),
        )
        got = (
            body.consignment_id,
            body.sender,
            body.consignment_digest,
            body.plaintext_commitment,
            body.policy_digest,
            sorted(body.receivers),
        )
        if got != expected:
            raise UntrustedMessage(
                "receipt_mismatch",
                f"the escrow's receipt for {deposit.consignment_id} does not match the deposit",
                "do not send the consignment; tell the escrow operator",
            )
        return Receipt.of(body, request_id, wire)

    async def _sent_record(self, consignment: Path | str) -> tuple[Path, str, list[str] | None]:
        """(file, consignment id, receivers if this agent sealed it)."""
        text = str(consignment)
        if isinstance(consignment, str) and is_consignment_id(text):
            record = await self.store.sealed(text)
            if record is None:
                raise AgentError(
                    f"this agent sealed no consignment {text}",
                    "give the consignment file instead of its id",
                )
            path, receivers = record
            return path, text, receivers
        path = Path(consignment)
        await require_file(path)
        info = await asyncio.to_thread(inspect, path)
        record = await self.store.sealed(info.consignment_id)
        return path, info.consignment_id, None if record is None else record[1]

    async def locate(self, consignment: Path | str) -> Path:
        """The file of a consignment: `consignment` itself, or the file of the
        consignment with that id that this agent sealed."""
        path, _, _ = await self._sent_record(consignment)
        return path

    async def send(
        self,
        consignment: Path | str,
        *,
        to: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> Sent:
        """Send the consignment file (a path, or the id of one this agent sealed)
        to the receivers' inboxes as signed chunks, many publishes in flight.
        `to` defaults to the receivers it was sealed for."""
        path, cid, sealed_for = await self._sent_record(consignment)
        receivers = list(dict.fromkeys(to)) if to else sealed_for
        if not receivers:
            raise AgentError(
                f"to whom? consignment {cid} was not sealed by this agent",
                "name the receivers (--to NAME)",
            )
        digest = await asyncio.to_thread(consignment_digest, path)
        size = (await asyncio.to_thread(path.stat)).st_size
        chunk = chunk_size(self.transport.config.max_message_size)
        count = chunk_count(size, chunk)
        # No declaring here: the escrow declared each receiver's inbox when it
        # took the deposit, and a sender's broker account needs no such right.
        slots = asyncio.Semaphore(_IN_FLIGHT)
        chunks = read_chunks(path, chunk)
        done = 0

        async def publish(receiver: str, piece: Chunk) -> None:
            try:
                message_id, wire = await asyncio.to_thread(
                    chunk_wire,
                    self.identity,
                    receiver=receiver,
                    consignment_id=cid,
                    digest=digest,
                    size=size,
                    count=count,
                    chunk=piece,
                    now=self.now(),
                )
                await self.transport.publish(
                    Inbox(receiver),
                    Message(body=wire, message_id=message_id, type=f"{MessageType.CHUNK}.v1"),
                )
            except Unroutable as exc:
                raise AgentError(
                    f"{receiver} has no inbox on this broker, so consignment {cid} "
                    "cannot be sent to it",
                    f"is {receiver} a receiver of it? (the escrow declares receivers' "
                    "inboxes at deposit); or send the file by another channel",
                ) from exc
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                while (piece := await asyncio.to_thread(next, chunks, None)) is not None:
                    for receiver in receivers:
                        await slots.acquire()
                        group.create_task(publish(receiver, piece))
                    done += len(piece.data)
                    if progress is not None:
                        progress(done, size)
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        finally:
            chunks.close()
        return Sent(consignment_id=cid, receivers=tuple(receivers), chunks=count, size=size)

    async def revoke(self, consignment_id: str, receivers: Sequence[str] = ()) -> Revoked:
        """Revoke the consignment for `receivers` (empty: every receiver).

        The escrow's status before and after says who was revoked already and
        who had been given the key part (revoke-reply carries neither); without
        a status the result says nothing about them."""
        require_consignment_id(consignment_id)
        names = tuple(sorted(set(map(require_name, receivers))))
        # NoReply here propagates: the escrow would not answer the revoke either.
        before = await self._status_or_none(consignment_id, EscrowRefused)
        _, body, _, _ = await self.request(
            MessageType.REVOKE,
            RevokeBody(consignment_id=consignment_id, receivers=names),
            subject=f"{consignment_id}:{','.join(names)}",
            reuse=True,
        )
        assert isinstance(body, RevokeReplyBody)
        if body.consignment_id != consignment_id:
            raise UntrustedMessage(
                "wrong_consignment", "the escrow's revoke reply is for another consignment"
            )
        revoked = tuple(body.revoked)
        # Releases cannot grow once revoked: the status after has the last word.
        after = await self._status_or_none(consignment_id, EscrowRefused, NoReply) or before
        already = (
            ()
            if before is None
            else tuple(
                r.name for r in before.receivers if r.name in revoked and r.revoked_at is not None
            )
        )
        releases = (
            None
            if after is None
            else {r.name: r.releases for r in after.receivers if r.name in revoked}
        )
        return Revoked(
            consignment_id=body.consignment_id,
            revoked=revoked,
            already_revoked=already,
            releases=releases,
        )

    async def _status_or_none(
        self, consignment_id: str, *quiet: type[ClientError]
    ) -> ConsignmentStatus | None:
        try:
            return await self.status(consignment_id)
        except quiet:
            return None  # the revoke itself says what is wrong, if anything

    async def status(self, consignment_id: str) -> ConsignmentStatus:
        """What the escrow holds about the consignment, receiver by receiver."""
        require_consignment_id(consignment_id)
        _, body, _, _ = await self.request(
            MessageType.STATUS, StatusBody(consignment_id=consignment_id), subject=consignment_id
        )
        assert isinstance(body, StatusReplyBody)
        if body.consignment_id != consignment_id:
            raise UntrustedMessage(
                "wrong_consignment", "the escrow's status reply is for another consignment"
            )
        return ConsignmentStatus(
            consignment_id=body.consignment_id,
            sender=body.sender,
            mode=body.mode,
            deposited_at=body.deposited_at,
            receivers=tuple(
                ReceiverState(
                    name=r.name,
                    notified_at=r.notified_at,
                    releases=r.releases,
                    revoked_at=r.revoked_at,
                    last_denied=r.last_denied,
                    last_denied_at=r.last_denied_at,
                    requested_at=r.requested_at,
                    released_at=r.released_at,
                    receipt_required=r.receipt_required,
                    receipt_at=r.receipt_at,
                    closes_at=r.closes_at,
                    expired_at=r.expired_at,
                )
                for r in body.receivers
            ),
            cosigners=tuple(Cosigner(c.name, c.signed_at) for c in body.cosigners),
        )

    async def attestations(
        self, consignment_id: str, kind: StatementKind | None = None
    ) -> list[Attested]:
        """The receipts (proofs of delivery) and co-signatures the escrow sent
        about the consignment, as kept (call `sync()` first for the latest),
        each verified again now: against the CA, the escrow's CRL, the
        certificate it carries and the signature."""
        require_consignment_id(consignment_id)
        kinds = [kind.value] if kind is not None else [k.value for k in StatementKind]
        wanted = [_EVENT_OF[k] for k in kinds]
        found: list[Attested] = []
        for wire in await self.store.event_wires(consignment_id, wanted):
            body = verify.parse(wire, me=self.name).body
            assert isinstance(body, EventBody)
            found.append(
                attest.attested(body, wire, ca=self._directory.ca, crl=self._directory.crl())
            )
        return found

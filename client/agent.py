"""The agents: an application's side of the escrow protocol (docs/protocol.md).

    async with SenderAgent(identity, transport, "acme", state_dir) as alice:
        sealed = await alice.seal(["report.pdf"], "report.consignment", to=["bob"])
        await alice.send(sealed.path)                      # chunks to bob's inbox
        print(await alice.status(sealed.consignment_id))

    async with ReceiverAgent(identity, transport, "acme", state_dir) as bob:
        inbox = await bob.fetch()                          # stored before acked
        opened = await bob.open(inbox.received[0].consignment_id, Path("out"))

Both read their inbox in the background, keep what arrives in `state_dir`
(SQLite), verify every message (the escrow's signature and certificate for
escrow messages, the sender's for chunks) and store every request before they
publish it, so asking again re-sends the same bytes. Errors are `ClientError`s:
`EscrowRefused` (the escrow's typed refusal), `NoReply`, `UntrustedMessage`,
`OpenError`. Sealing and opening run in worker threads: the event loop is never
blocked.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

from broker import SealedMessageError, open_key_part, seal_deposit
from broker.deposit import ControlAttributes, Deposit, KeyRelease, Mode
from broker.errors import Unroutable
from broker.messages import (
    DepositBody,
    DepositReceiptBody,
    ErrorCode,
    KeyReleaseBody,
    KeyRequestBody,
    MessageType,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
)
from broker.transport.base import Inbox, Message
from client import _chunks
from client._agent import (
    Agent,
    check_release_window,
    is_consignment_id,
    require_consignment_id,
    require_name,
)
from client._agent_store import dumps
from client._agent_types import (
    ConsignmentStatus,
    Event,
    InboxContents,
    Notification,
    OpenedConsignment,
    Party,
    Receipt,
    Received,
    ReceiverState,
    Refusal,
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
    unseal_async,
)
from client.errors import (
    AgentError,
    ClientError,
    EscrowRefused,
    NoReply,
    OpenError,
    UntrustedMessage,
)

__all__ = [
    "ConsignmentStatus",
    "Event",
    "InboxContents",
    "Notification",
    "OpenedConsignment",
    "Party",
    "Receipt",
    "Received",
    "ReceiverAgent",
    "ReceiverState",
    "Refusal",
    "Revoked",
    "Sealed",
    "SenderAgent",
    "Sent",
]

#: Chunk publishes awaiting their broker confirm at once.
_IN_FLIGHT = 16


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
    ) -> Sealed:
        """Look up the receivers, seal `inputs` into `output` and deposit the key
        part at the escrow; returns once the escrow's signed receipt is checked.
        If the escrow refuses the deposit, `output` is removed again (nobody
        could open it); on `NoReply` it stays, as the deposit may have landed."""
        names = list(dict.fromkeys(to))
        if not names:
            raise AgentError("no receiver given", "name at least one receiver (--to NAME)")
        check_release_window(attributes, now=self._ts())
        parties = await asyncio.gather(*(self.lookup(name) for name in names))
        escrow = await self.escrow_party()
        path = Path(await asyncio.to_thread(os.path.abspath, output))
        deposit = await seal_async(
            inputs,
            path,
            sender=Sender(self.name, self.identity.signing_key),
            receivers=[Recipient(p.name, p.encryption_key) for p in parties],
            escrow=self.escrow,
            mode=mode,
            attributes=attributes,
            progress=progress,
        )
        try:
            receipt = await self._deposit(deposit, escrow)
        except (EscrowRefused, UntrustedMessage):
            # Refused: a file whose key part nobody holds opens for no one.
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        async with self.store.tx() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO sent (consignment_id, path, mode, receivers,"
                " consignment_digest, consignment_size, sealed_at, receipt, receipt_wire)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    deposit.consignment_id,
                    str(path),
                    mode.value,
                    dumps(names),
                    deposit.consignment_digest,
                    deposit.consignment_size,
                    deposit.sealed_at,
                    dumps({"request_id": receipt.request_id, "deposited_at": receipt.deposited_at}),
                    receipt.signed,
                ),
            )
        return Sealed(
            consignment_id=deposit.consignment_id,
            path=path,
            mode=mode,
            receivers=tuple(names),
            consignment_digest=deposit.consignment_digest,
            consignment_size=deposit.consignment_size,
            receipt=receipt,
        )

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
        return Receipt(
            consignment_id=body.consignment_id,
            sender=body.sender,
            deposited_at=body.deposited_at,
            consignment_digest=body.consignment_digest,
            plaintext_commitment=body.plaintext_commitment,
            policy_digest=body.policy_digest,
            receivers=tuple(body.receivers),
            request_id=request_id,
            signed=wire,
        )

    async def _sent_record(self, consignment: Path | str) -> tuple[Path, str, list[str] | None]:
        """(file, consignment id, receivers if this agent sealed it)."""
        text = str(consignment)
        if isinstance(consignment, str) and is_consignment_id(text):
            row = await self.store.fetchone(
                "SELECT path, receivers FROM sent WHERE consignment_id = ?", (text,)
            )
            if row is None:
                raise AgentError(
                    f"this agent sealed no consignment {text}",
                    "give the consignment file instead of its id",
                )
            return Path(row["path"]), text, _names(row["receivers"])
        path = Path(consignment)
        await _require_file(path)
        info = await asyncio.to_thread(inspect, path)
        row = await self.store.fetchone(
            "SELECT receivers FROM sent WHERE consignment_id = ?", (info.consignment_id,)
        )
        return path, info.consignment_id, None if row is None else _names(row["receivers"])

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
        chunk = _chunks.chunk_size(self.transport.config.max_message_size)
        count = _chunks.chunk_count(size, chunk)
        # No declaring here: the escrow declared each receiver's inbox when it
        # took the deposit, and a sender's broker account needs no such right.
        slots = asyncio.Semaphore(_IN_FLIGHT)
        chunks = _chunks.read_chunks(path, chunk)
        done = 0

        async def publish(receiver: str, piece: _chunks.Chunk) -> None:
            try:
                message_id, wire = await asyncio.to_thread(
                    _chunks.chunk_wire,
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
                )
                for r in body.receivers
            ),
        )


class ReceiverAgent(Agent):
    """Reads its inbox (notifications, chunks, replies, events), keeps every
    message durably before acking it, and opens consignments with the key part
    the escrow releases. Constructed like `SenderAgent`."""

    async def fetch(self, *, idle: float = 0.5, timeout: float = 30.0) -> InboxContents:  # noqa: ASYNC109
        """Wait until the inbox is quiet, then return everything that arrived."""
        await self.sync(idle=idle, timeout=timeout)
        return await self.inbox()

    async def locate(self, consignment: Path | str) -> Path:
        """The file of a consignment: `consignment` itself, or the file of the
        consignment with that id that arrived in the inbox (read first if it
        has not been stored yet)."""
        text = str(consignment)
        if isinstance(consignment, str) and is_consignment_id(text):
            query = "SELECT state, path FROM received WHERE consignment_id = ?"
            row = await self.store.fetchone(query, (text,))
            if row is None or row["state"] != "complete":
                # Not here yet: read what the inbox holds (as `consign inbox` would).
                await self.sync(idle=0.5, timeout=10.0)
                row = await self.store.fetchone(query, (text,))
            if row is None or row["state"] != "complete":
                state = "has not arrived" if row is None else f"is {row['state']}"
                raise AgentError(
                    f"consignment {text} {state} in the inbox of {self.name!r}",
                    "run `consign inbox` to fetch it, or give the consignment file",
                )
            return Path(row["path"])
        return Path(consignment)

    async def open(
        self,
        consignment: Path | str,
        destination: Path | str,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> OpenedConsignment:
        """Open a consignment (a file, or the id of one that arrived in the inbox)
        into the directory `destination`: check its digest, ask the escrow for
        the key part, check the signed release and the sender's certificate,
        then decrypt. Nothing is written unless every check passed."""
        path = await self.locate(consignment)
        await _require_file(path)
        info = await asyncio.to_thread(inspect, path)
        if info.escrow != self.escrow:
            raise AgentError(
                f"consignment {info.consignment_id} was sealed for escrow {info.escrow!r}, "
                f"not {self.escrow!r}",
                "open it with an identity of that escrow",
            )
        digest = await asyncio.to_thread(consignment_digest, path)
        cid = info.consignment_id
        try:
            _, body, _, _ = await self.request(
                MessageType.KEY_REQUEST,
                KeyRequestBody(consignment_id=cid, consignment_digest=digest),
                subject=f"{cid}:{digest}",
                reuse=True,
            )
        except EscrowRefused as exc:
            raise await self._explain_unknown(exc, cid) from None
        assert isinstance(body, KeyReleaseBody)
        if (body.consignment_id, body.consignment_digest, body.mode) != (cid, digest, info.mode):
            raise UntrustedMessage(
                "wrong_consignment",
                f"the escrow's key release is not for consignment {cid} as you hold it",
                "do not trust this release; tell the escrow operator",
            )
        sender = await self.lookup(body.sender)
        if body.mode is Mode.SPLIT:
            try:
                key_part = open_key_part(
                    body.sealed_key_part, self.identity.encryption_key, cid, body.policy_digest
                )
            except SealedMessageError:
                raise OpenError() from None
        else:
            key_part = body.sealed_key_part
        release = KeyRelease(
            consignment_id=cid, mode=body.mode, policy_digest=body.policy_digest, key_part=key_part
        )
        opened = await unseal_async(
            path,
            Path(destination),
            identity=self.identity.encryption_key,
            release=release,
            sender_key=sender.signing_key,
            overwrite=overwrite,
            progress=progress,
        )
        return OpenedConsignment(
            consignment_id=cid,
            sender=body.sender,
            mode=body.mode,
            destination=Path(destination),
            files=tuple(opened.files),
            released_at=body.released_at,
        )

    async def _explain_unknown(self, refused: EscrowRefused, cid: str) -> EscrowRefused:
        """An unknown consignment that no notification announced either: the id
        was read from the file, so the file itself is the likely culprit."""
        if refused.code != ErrorCode.UNKNOWN_CONSIGNMENT:
            return refused
        if await self.store.fetchone(
            "SELECT 1 FROM notifications WHERE consignment_id = ?", (cid,)
        ):
            return refused
        return EscrowRefused(
            refused.code,
            f"{refused}; no notification of consignment {cid} reached {self.name!r} either",
            "the file may be damaged (the id comes from its header) or was deposited at "
            "another escrow; get a fresh copy from the sender",
            request_type=refused.request_type,
            consignment_id=refused.consignment_id,
            reason=refused.reason,
        )


async def _require_file(path: Path) -> None:
    if not await asyncio.to_thread(path.is_file):
        raise AgentError(f"no consignment file {path}", "check the path, or give the id")


def _names(value: str) -> list[str]:
    names = json.loads(value)
    return [str(n) for n in names]

"""The receiver's agent: fetch the inbox, sign receipts and open consignments.

`ReceiverAgent.open` checks the consignment's digest, asks the escrow for the
key part (a signed key-request; first a signed receipt where the sender asked
for one), checks the signed release and the sender's certificate, then
decrypts in a worker thread. This module must never write an
opened file before every check has passed (`client.consignment.unseal` stages
and commits).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Final

from broker import SealedMessageError, open_key_part
from broker.attest import StatementKind
from broker.deposit import KeyRelease, Mode
from broker.messages import (
    ErrorCode,
    KeyReleaseBody,
    KeyRequestBody,
    MessageType,
    ReceiptReplyBody,
)
from client.agent import unattended
from client.agent.bulk import BatchProgress, ItemResult
from client.agent.core import Agent
from client.agent.inputs import is_consignment_id, require_file
from client.agent.types import InboxContents, OpenedConsignment, Party, Signed
from client.consignment import (
    ConsignmentInfo,
    Progress,
    consignment_digest,
    inspect,
    unseal_async,
)
from client.errors import AgentError, ClientError, EscrowRefused, OpenError, UntrustedMessage

#: Seconds between the notices of a consignment still arriving.
_TELL_EVERY: Final = 2.0


class ReceiverAgent(Agent):
    """Reads its inbox (notifications, chunks, replies, events), keeps every
    message durably before acking it, and opens consignments with the key part
    the escrow releases. Constructed like `SenderAgent`."""

    async def fetch(
        self,
        *,
        idle: float = 0.5,
        timeout: float = 30.0,  # noqa: ASYNC109
        everything: bool = True,
    ) -> InboxContents:
        """Wait until the inbox is quiet, then return what arrived (see `inbox`)."""
        await self.sync(idle=idle, timeout=timeout)
        return await self.inbox(everything=everything)

    async def locate(self, consignment: Path | str) -> Path:
        """The file of a consignment: `consignment` itself, or the file of the
        consignment with that id that arrived in the inbox. One still arriving
        is waited for, as long as its chunks keep coming (`notice` is told how
        far it is); one not announced at all is read from the inbox first."""
        text = str(consignment)
        if not (isinstance(consignment, str) and is_consignment_id(text)):
            return Path(consignment)
        arrived = await self.store.received_file(text)
        if arrived is None or arrived[0] != "complete":
            await self._await_arrival(text)
            arrived = await self.store.received_file(text)
        if arrived is None or arrived[0] != "complete" or arrived[1] is None:
            state = "has not arrived" if arrived is None else f"is {arrived[0]}"
            raise AgentError(
                f"consignment {text} {state} in the inbox of {self.name!r}",
                "has the sender sent it (`consign send`)? run `consign inbox` to see what "
                "arrived, or give the consignment file",
                code="not_arrived",
            )
        return arrived[1]

    async def _await_arrival(self, consignment_id: str) -> None:
        """Read the inbox until the consignment is complete, or nothing more of
        it has come for `reply_timeout` seconds (10 at most if none of it came)."""
        loop = asyncio.get_running_loop()
        started = since = told = loop.time()
        last: tuple[str, int, int] | None = None
        await self.sync(idle=0.5, timeout=min(10.0, self.reply_timeout))
        while True:
            now = await self.store.arrival(consignment_id)
            if now is None:
                if loop.time() - started >= min(10.0, self.reply_timeout):
                    return
            elif now[0] != "partial":
                return
            elif now != last:
                last, since = now, loop.time()
            elif loop.time() - since >= self.reply_timeout:
                return
            if now is not None and self.notice is not None and loop.time() - told >= _TELL_EVERY:
                told = loop.time()
                self.notice(f"waiting for consignment {consignment_id}: {now[1]}/{now[2]} chunks")
            await self.sync(idle=0.2, timeout=_TELL_EVERY)

    async def open(
        self,
        consignment: Path | str,
        destination: Path | str,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        receipt: bool = True,
        keep: bool = False,
    ) -> OpenedConsignment:
        """Open a consignment (a file, or the id of one that arrived in the inbox)
        into the directory `destination`: check its digest, ask the escrow for
        the key part, check the signed release and the sender's certificate,
        then decrypt. Nothing is written unless every check passed.

        A file that is not a consignment this escrow holds as you hold it
        (unreadable header, another escrow's name, an id or digest the escrow
        does not know) is the one `OpenError`, whichever field is wrong: until
        the escrow's signed answer says more, nothing read from the file is
        stated as a fact.

        If the sender asked this receiver for a receipt, the escrow refuses the
        first request (`receipt_required`): with `receipt` (the default) the
        agent then signs and sends the receipt (`send_receipt`) and asks again;
        without, the refusal is raised.

        Once opened, the consignment's file is removed from the agent's state
        if it arrived in the inbox (unless `keep`): the opened files are what
        the receiver keeps."""
        path = await self.locate(consignment)
        await require_file(path)
        # Nothing in the header is authenticated yet: it names what to ask for,
        # and a header that cannot be ours is the one OpenError, never its words.
        info = await asyncio.to_thread(inspect, path)
        if info.escrow != self.escrow:
            raise OpenError()
        digest = await asyncio.to_thread(consignment_digest, path)
        cid = info.consignment_id
        signed: Signed | None = None
        while True:
            try:
                _, body, _, _ = await self.request(
                    MessageType.KEY_REQUEST,
                    KeyRequestBody(consignment_id=cid, consignment_digest=digest),
                    subject=f"{cid}:{digest}",
                    reuse=True,
                )
                break
            except EscrowRefused as exc:
                if exc.code != ErrorCode.RECEIPT_REQUIRED or not receipt or signed is not None:
                    explained = await self._explain(exc, cid)
                    if explained is exc:
                        raise
                    raise explained from exc
            # The sender asks for a signed receipt first: sign it, then ask again.
            signed = await self._receipt(cid, digest, info.policy_digest)
        assert isinstance(body, KeyReleaseBody)
        opened = await self.open_released(
            path, info, digest, body, destination, overwrite=overwrite, progress=progress, keep=keep
        )
        if signed is None:
            return opened
        return dataclasses.replace(opened, receipt_signed_at=signed.signed_at)

    async def open_released(
        self,
        path: Path,
        info: ConsignmentInfo,
        digest: str,
        body: KeyReleaseBody,
        destination: Path | str,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        senders: dict[str, Party] | None = None,
        keep: bool = False,
    ) -> OpenedConsignment:
        """Open the consignment at `path` (its header `info`, its `digest`) with
        the escrow's verified `key-release`: check that the release is for it,
        look up and check the sender, then decrypt (`open`'s last steps; the batch
        operations come here with a release from a `batch-reply`, and pass
        `senders`, the parties looked up in this pass, to look each up once). The
        file is removed once opened if it arrived in the inbox, unless `keep`."""
        cid = info.consignment_id
        if (body.consignment_id, body.consignment_digest, body.mode) != (cid, digest, info.mode):
            raise UntrustedMessage(
                "wrong_consignment",
                f"the escrow's key release is not for consignment {cid} as you hold it",
                "do not trust this release; tell the escrow operator",
            )
        sender = None if senders is None else senders.get(body.sender)
        if sender is None:
            sender = await self.lookup(body.sender)
            if senders is not None:
                senders[body.sender] = sender
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
            consignment_id=cid,
            mode=body.mode,
            escrow=self.escrow,  # the escrow whose signature on the release was checked
            policy_digest=body.policy_digest,
            key_part=key_part,
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
        if not keep:
            arrived = await self.store.opened(cid, self._ts())
            if arrived is not None and arrived == path:
                await asyncio.to_thread(arrived.unlink, missing_ok=True)
        return OpenedConsignment(
            consignment_id=cid,
            sender=body.sender,
            mode=body.mode,
            destination=Path(destination),
            files=tuple(opened.files),
            released_at=body.released_at,
        )

    async def open_many(
        self, into: Path | str, *, progress: BatchProgress | None = None
    ) -> list[ItemResult]:
        """Open every consignment that arrived whole and was not opened yet, each
        into `into/<consignment id>`, asking for the key parts in `batch`
        requests; a result per consignment. Run again after a crash, it asks
        with the same items: no key part is released twice."""
        results, _ = await unattended.open_many(self, Path(into), progress=progress)
        return results

    async def serve(
        self,
        handler: unattended.Handler,
        into: Path | str,
        *,
        stop: asyncio.Event,
        options: unattended.ServeOptions | None = None,
    ) -> None:
        """Run unattended until `stop` is set: open each consignment as it
        arrives into `into/<consignment id>` and await `handler(opened)`. A
        consignment counts as handled only once the handler returned; one whose
        handler raised or overran `options.handler_timeout` is handed over again
        later, and parked with its reason after `options.max_tries`. Across
        restarts each consignment is opened once and handled once."""
        await unattended.serve(
            self, handler, Path(into), stop=stop, options=options or unattended.ServeOptions()
        )

    async def parked(self) -> list[tuple[str, str]]:
        """(consignment id, reason) of every consignment `serve` parked."""
        return [(r["consignment_id"], r["reason"]) for r in await self.store.parked()]

    async def _explain(self, refused: EscrowRefused, cid: str) -> ClientError:
        """What to raise for a refused key request. The escrow's `digest_mismatch`
        says the file is not the one deposited; `unknown_consignment` for an id
        no notification announced says the id read from the file names nothing
        here: both are what the one OpenError says (damaged, altered, or of
        another escrow), so an altered file gets one message whichever field
        was altered. The escrow's refusal stays attached as the cause."""
        if refused.code == ErrorCode.DIGEST_MISMATCH:
            return OpenError()
        if refused.code == ErrorCode.UNKNOWN_CONSIGNMENT and not await self.store.notified(cid):
            return OpenError()
        return refused

    async def send_receipt(self, consignment: Path | str) -> Signed:
        """Sign a receipt for a consignment (a file, or the id of one that arrived
        in the inbox) over its id, its digest and the policy digest of its
        header, and send it to the escrow, which checks it, keeps it and tells
        the sender. `open` does this by itself when the sender asked for it."""
        path = await self.locate(consignment)
        await require_file(path)
        info = await asyncio.to_thread(inspect, path)
        digest = await asyncio.to_thread(consignment_digest, path)
        return await self._receipt(info.consignment_id, digest, info.policy_digest)

    async def _receipt(self, cid: str, digest: str, policy_digest: bytes) -> Signed:
        statement, body = await self._attest(StatementKind.RECEIPT, cid, digest, policy_digest)
        if body is None:
            return Signed(StatementKind.RECEIPT, cid, self.name, statement.signed_at, None)
        assert isinstance(body, ReceiptReplyBody)
        return Signed(StatementKind.RECEIPT, cid, self.name, statement.signed_at, body.recorded_at)

"""Consignments arriving in chunks: verify each chunk, write its data in place
into the consignment's file, list it in the database, and once all are there
keep the file if it adds up to the signed digest.

The inbox pump hands a batch of chunk deliveries to `Arrivals.take`: they are
parsed and their signatures verified in a worker thread, written (one sync
per file per batch), listed in one transaction, and only then acked by the
caller. The database holds metadata only, never a chunk's data. A chunk that
cannot be taken this way (its sender's certificate not looked up yet, a
failed check) goes through the spool instead, where the inbox files or
refuses it (`file`). This module must never list a chunk before its data is
synced, nor keep a file whose digest is not the signed one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from broker.messages import ChunkBody, MessageType
from broker.transport.base import Delivery
from client.agent import verify
from client.agent.chunks import Assembly, chunk_length
from client.agent.directory import Directory, NeedLookup
from client.agent.store import ChunkRow
from client.errors import UntrustedCertificate, UntrustedMessage

if TYPE_CHECKING:
    from client.agent.core import Agent

CHUNK_TYPE = f"{MessageType.CHUNK}.v1"


class Arrivals:
    """The chunks of `agent`'s inbox."""

    def __init__(self, agent: Agent, directory: Directory) -> None:
        self._agent = agent
        self._directory = directory

    def _assembly(self, consignment_id: str) -> Assembly:
        return Assembly(self._agent.state_dir / "received", consignment_id)

    async def take(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Verify and keep the chunks it can; returns the deliveries left for
        the spool. Every delivery not returned is kept (or was held already)."""
        me = self._agent.name
        directory = self._directory

        def check() -> list[tuple[Delivery, str, ChunkBody] | Delivery]:
            out: list[tuple[Delivery, str, ChunkBody] | Delivery] = []
            for delivery in deliveries:
                try:
                    message = verify.parse(delivery.body, me=me)
                    if message.envelope.type != MessageType.CHUNK:
                        raise UntrustedMessage("unexpected_type", "not a chunk")
                    certs, key = directory.chunk_signer(message)
                    verify.verify_with(message, certs, key)
                except (NeedLookup, UntrustedMessage, UntrustedCertificate):
                    out.append(delivery)  # the spool's path says why, or waits for a lookup
                    continue
                assert isinstance(message.body, ChunkBody)
                out.append((delivery, message.envelope.reply_to, message.body))
            return out

        checked = await asyncio.to_thread(check)
        left = [c for c in checked if isinstance(c, Delivery)]
        good = [c for c in checked if not isinstance(c, Delivery)]
        rows = [_row(None, sender, body) for _, sender, body in good]
        kept = await self.keep(
            [(row, body) for row, (_, _, body) in zip(rows, good, strict=True) if row is not None]
        )
        left += [
            d
            for row, (d, _, body) in zip(rows, good, strict=True)
            if row is None or (row.consignment_id, row.index) not in kept
        ]
        return left

    async def file(self, seq: int, sender: str, body: ChunkBody) -> None:
        """A verified chunk from the spool: keep it, or raise `UntrustedMessage`."""
        row = _row(seq, sender, body)
        if row is None:
            raise UntrustedMessage(
                "malformed",
                f"chunk {body.index} of {body.count} of {body.consignment_id} is out of bounds",
            )
        if not await self.keep([(row, body)]):
            raise UntrustedMessage(
                "inconsistent_chunk",
                f"chunk {body.index} of {body.consignment_id} disagrees with the chunks before it",
            )

    async def keep(self, chunks: Sequence[tuple[ChunkRow, ChunkBody]]) -> set[tuple[str, int]]:
        """Write, sync and list the chunks; returns (consignment id, index) of
        those kept or held already (the rest are inconsistent)."""
        if not chunks:
            return set()
        store, now = self._agent.store, int(self._agent.now().timestamp())
        states = await store.begin_chunks([row for row, _ in chunks], now)
        new = [
            (row, body) for (row, body), state in zip(chunks, states, strict=True) if state == "new"
        ]
        by_file: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        for row, body in new:
            by_file[row.consignment_id].append((row.index * row.meta[4], body.data))

        def write() -> None:
            for cid, pieces in by_file.items():
                self._assembly(cid).write(pieces)

        await asyncio.to_thread(write)
        held = await store.keep_chunks([row for row, _ in new])
        for cid, count in held.items():
            row = next(r for r, _ in new if r.consignment_id == cid)
            if count == row.meta[3]:
                await self._assemble(cid, row.meta[2], row.meta[1])
        return {
            (row.consignment_id, row.index)
            for (row, _), state in zip(chunks, states, strict=True)
            if state != "inconsistent"
        }

    async def _assemble(self, consignment_id: str, size: int, digest: str) -> None:
        assembly = self._assembly(consignment_id)
        kept = await asyncio.to_thread(assembly.assemble, size, digest)
        now = int(self._agent.now().timestamp())
        await self._agent.store.assembled(consignment_id, assembly.final if kept else None, now)
        await asyncio.to_thread(assembly.clear)


def _row(seq: int | None, sender: str, body: ChunkBody) -> ChunkRow | None:
    """The chunk as the store lists it, or None if its place is impossible."""
    each = chunk_length(body.index, body.count, body.total_size, len(body.data))
    if each is None:
        return None
    meta = (sender, body.consignment_digest, body.total_size, body.count, each)
    return ChunkRow(seq, body.consignment_id, body.index, len(body.data), meta)

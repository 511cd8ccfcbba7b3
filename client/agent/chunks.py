"""A consignment file as `consignment-chunk` messages, and back.

The sender cuts the file into pieces of at most 512 KiB, each a message signed
by the sender and addressed to one receiver; the receiver stores each piece
(verified) in a file of its own and, once it holds them all, writes them in
index order to one file and compares the whole with the signed digest before
keeping it. Functions here are synchronous and meant to run in a worker
thread; they hold no key but the one handed in and never write outside the
directory given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import blake3

from broker.envelope import new_envelope, sign_envelope
from broker.messages import ChunkBody, MessageType
from broker.pki.identity import Identity

#: The protocol's limit for the data of one chunk.
MAX_CHUNK: Final = 512 * 1024
#: Chunks are not requests: the escrow never sees them and receivers do not
#: check their freshness, only who signed them and the digest of the whole.
_CHUNK_LIFETIME: Final = timedelta(days=7)


def chunk_size(max_message_size: int) -> int:
    """The largest chunk whose signed message fits `max_message_size` bytes.

    The data is base64 inside the envelope JSON, whose bytes are base64 again in
    the wire form: 16/9 of the data plus fixed overhead."""
    size = min(MAX_CHUNK, (max_message_size - 2048) * 9 // 16)
    if size < 1024:
        raise ValueError("the broker's message size limit is too small for consignment chunks")
    return size


def chunk_count(size: int, chunk: int) -> int:
    return max(1, -(-size // chunk))


@dataclass(frozen=True)
class Chunk:
    index: int
    data: bytes


def read_chunks(path: Path, chunk: int) -> Generator[Chunk]:
    """The file's chunks in order (at least one, empty if the file is)."""
    with path.open("rb") as handle:
        index = 0
        while True:
            data = handle.read(chunk)
            if not data and index > 0:
                return
            yield Chunk(index, data)
            index += 1
            if len(data) < chunk:
                return


def chunk_wire(
    identity: Identity,
    *,
    receiver: str,
    consignment_id: str,
    digest: str,
    size: int,
    count: int,
    chunk: Chunk,
    now: datetime,
) -> tuple[str, bytes]:
    """(message id, signed wire bytes) of one chunk for `receiver`."""
    body = ChunkBody(
        consignment_id=consignment_id,
        index=chunk.index,
        count=count,
        total_size=size,
        consignment_digest=digest,
        data=chunk.data,
    )
    envelope = new_envelope(
        type=MessageType.CHUNK.value,
        body=body.model_dump(mode="json"),
        audience=receiver,
        signer=identity.signer,
        now=now,
        reply_to=identity.name,
        lifetime=_CHUNK_LIFETIME,
    )
    return envelope.request_id, sign_envelope(envelope, identity.signing_key).to_wire()


@dataclass(frozen=True)
class Assembly:
    """Keeps each chunk's data in a file of its own, then writes them in order
    to the final file, kept only if its size and digest are the signed ones."""

    directory: Path
    consignment_id: str

    @property
    def parts(self) -> Path:
        return self.directory / f".{self.consignment_id}.parts"

    @property
    def final(self) -> Path:
        return self.directory / f"{self.consignment_id}.consignment"

    def keep(self, index: int, data: bytes) -> None:
        """Write one chunk durably (fsync) before its message is dropped."""
        self.parts.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.parts / str(index)
        with path.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def assemble(self, count: int, size: int, digest: str) -> bool:
        partial = self.directory / f".{self.consignment_id}.partial"
        hasher = blake3.blake3()
        written = 0
        try:
            with partial.open("wb") as out:
                for index in range(count):
                    with (self.parts / str(index)).open("rb") as part:
                        while block := part.read(1 << 20):
                            hasher.update(block)
                            out.write(block)
                            written += len(block)
                out.flush()
                os.fsync(out.fileno())
            if (written, hasher.hexdigest()) != (size, digest):
                return False
            os.replace(partial, self.final)
            return True
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)

"""A consignment file as `consignment-chunk` messages, and back.

The sender cuts the file into pieces of at most 512 KiB, each a message signed
by the sender and addressed to one receiver; the receiver writes each piece
(verified) in place into one hidden file and, once it holds them all, compares
the whole with the signed digest before keeping it under its final name.
Functions here are synchronous and meant to run in a worker thread; they hold
no key but the one handed in and never write outside the directory given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Generator, Iterable
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


def chunk_length(index: int, count: int, size: int, length: int) -> int | None:
    """The length of every chunk but the last, from one chunk's place and
    length, or None if no cutting of `size` bytes into `count` chunks has it."""
    if not 0 <= index < count or length > MAX_CHUNK:
        return None
    if count == 1:
        return length if length == size else None
    if index < count - 1:
        each = length
    else:
        each, rest = divmod(size - length, count - 1)
        if rest:
            return None
    if each < 1 or each > MAX_CHUNK or not each * (count - 1) < size <= each * count:
        return None
    return each


@dataclass(frozen=True)
class Assembly:
    """A consignment arriving in chunks: each chunk's data is written in place
    (at its index times the chunk length) into one hidden file, synced before
    its message is acked; once all are there, the file is kept under its final
    name only if its size and digest are the signed ones."""

    directory: Path
    consignment_id: str

    @property
    def partial(self) -> Path:
        return self.directory / f".{self.consignment_id}.partial"

    @property
    def final(self) -> Path:
        return self.directory / f"{self.consignment_id}.consignment"

    def write(self, pieces: Iterable[tuple[int, bytes]]) -> None:
        """Write (offset, data) pieces, then sync the file once."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.partial, flags, 0o600)
        try:
            for offset, data in pieces:
                view = memoryview(data)
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
            os.fsync(fd)
        finally:
            os.close(fd)

    def assemble(self, size: int, digest: str) -> bool:
        """Keep the file under its final name if it is the signed one; else remove it."""
        hasher = blake3.blake3()
        try:
            with self.partial.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size != size:
                    return False
                while block := handle.read(1 << 20):
                    hasher.update(block)
            if hasher.hexdigest() != digest:
                return False
            os.replace(self.partial, self.final)
            return True
        finally:
            with contextlib.suppress(OSError):
                self.partial.unlink()

    def clear(self) -> None:
        """Remove what an unfinished or failed arrival left (also the chunk files
        of an earlier release)."""
        with contextlib.suppress(OSError):
            self.partial.unlink()
        shutil.rmtree(self.directory / f".{self.consignment_id}.parts", ignore_errors=True)


def reclaim(directory: Path, files: Iterable[Path], receiving: set[str]) -> list[int]:
    """Remove `files` (inside `directory` only) and what interrupted arrivals
    left there: hidden files and chunk folders of consignments not arriving
    any more. Returns the sizes of what was removed."""
    sizes: list[int] = []

    def remove(path: Path) -> None:
        try:
            if path.is_dir() and not path.is_symlink():
                size = sum(p.stat().st_size for p in path.iterdir())
                shutil.rmtree(path)
            else:
                size = path.lstat().st_size
                path.unlink()
        except OSError:
            return
        sizes.append(size)

    for path in files:
        if path.parent == directory:
            remove(path)
    if directory.is_dir():
        for path in directory.iterdir():
            name = path.name
            hidden = name.startswith(".") and name.endswith((".partial", ".parts"))
            if hidden and name[1:].rsplit(".", 1)[0] not in receiving:
                remove(path)
    return sizes

"""The payload: a STREAM of AES-256-GCM chunks, sealed and opened in bounded memory.

Chunk i of n is encrypted under the per-consignment payload key with the nonce
chunk_nonce(i, i == n - 1), so truncation, extension, reordering and bit flips all
fail authentication. Work runs in fixed segments of SEGMENT_CHUNKS chunks: the
calling thread reads and encrypts or decrypts; one helper thread feeds the bytes to
the two BLAKE3 hashes and another writes them out. AES-GCM, BLAKE3 and file I/O all
release the GIL, so the stages overlap on two cores. Memory is SLOTS segments
whatever the size.

This module must never hand a byte of plaintext to its sink before the chunk that
holds it has authenticated.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client._format import CHUNK_SIZE, TAG_SIZE, chunk_nonce

SEGMENT_CHUNKS = 16
SEGMENT = SEGMENT_CHUNKS * CHUNK_SIZE
SEGMENT_CT = SEGMENT_CHUNKS * (CHUNK_SIZE + TAG_SIZE)
SLOTS = 4  # segments in flight: one being filled, the others being hashed or written

Progress = Callable[[int], None]


class PayloadError(Exception):
    """A chunk failed to authenticate, or the payload ended early."""


def _update(plain_hash: Any, plain: memoryview, body_hash: Any, cipher: memoryview) -> None:
    plain_hash.update(plain)
    body_hash.update(cipher)


class _Pipeline:
    """Buffers for SLOTS segments, one hashing thread and one writing thread.

    Each thread takes its work in order, so the hashes see the bytes in order and
    the writes land in order; a slot's buffers are reused only once both threads
    are done with them.
    """

    def __init__(
        self, plain_hash: Any, body_hash: Any, write: Callable[[memoryview], object]
    ) -> None:
        self._plain_hash = plain_hash
        self._body_hash = body_hash
        self._write = write
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consign-hash")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consign-write")
        self._buffers = [(bytearray(SEGMENT), bytearray(SEGMENT_CT)) for _ in range(SLOTS)]
        self._pending: list[list[Future[Any]]] = [[] for _ in range(SLOTS)]

    def slot(self, index: int) -> tuple[memoryview, memoryview]:
        for future in self._pending[index % SLOTS]:
            future.result()  # re-raises a failed write or hash here
        self._pending[index % SLOTS] = []
        plain, cipher = self._buffers[index % SLOTS]
        return memoryview(plain), memoryview(cipher)

    def submit(self, index: int, plain: memoryview, cipher: memoryview, out: memoryview) -> None:
        self._pending[index % SLOTS] = [
            self._writer.submit(self._write, out),
            self._hasher.submit(_update, self._plain_hash, plain, self._body_hash, cipher),
        ]

    def finish(self) -> None:
        for index in range(SLOTS):
            self.slot(index)
        self._hasher.shutdown(wait=True)
        self._writer.shutdown(wait=True)

    def abandon(self) -> None:
        self._hasher.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True, cancel_futures=True)


def _segments(size: int) -> list[tuple[int, int]]:
    """(first chunk index, plaintext bytes) of each segment of a payload of `size`."""
    out = []
    offset = 0
    while offset < size:
        n = min(SEGMENT, size - offset)
        out.append((offset // CHUNK_SIZE, n))
        offset += n
    return out


def encrypt_payload(
    key: bytes,
    size: int,
    fill: Callable[[memoryview], None],
    out: BinaryIO,
    plain_hash: Any,
    body_hash: Any,
    progress: Progress | None = None,
) -> None:
    """Encrypt `size` plaintext bytes taken from `fill` (which fills a view exactly)."""
    aead = AESGCM(key)
    last_chunk = max(1, -(-size // CHUNK_SIZE)) - 1
    pipeline = _Pipeline(plain_hash, body_hash, out.write)
    try:
        for seg, (first, n) in enumerate(_segments(size)):
            plain, cipher = pipeline.slot(seg)
            plain = plain[:n]
            fill(plain)
            pos = cpos = 0
            index = first
            while pos < n:
                m = min(CHUNK_SIZE, n - pos)
                aead.encrypt_into(
                    chunk_nonce(index, index == last_chunk),
                    plain[pos : pos + m],
                    None,
                    cipher[cpos : cpos + m + TAG_SIZE],
                )
                pos += m
                cpos += m + TAG_SIZE
                index += 1
            pipeline.submit(seg, plain, cipher[:cpos], cipher[:cpos])
            if progress is not None:
                progress(n)
        pipeline.finish()
    except BaseException:
        pipeline.abandon()
        raise


def _read_exact(src: BinaryIO, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise PayloadError("the payload ends early")
        got += n


def decrypt_payload(
    key: bytes,
    size: int,
    src: BinaryIO,
    sink: Callable[[memoryview], None],
    plain_hash: Any,
    body_hash: Any,
    progress: Progress | None = None,
) -> None:
    """Decrypt a payload of `size` plaintext bytes, handing authenticated bytes to sink."""
    aead = AESGCM(key)
    last_chunk = max(1, -(-size // CHUNK_SIZE)) - 1
    pipeline = _Pipeline(plain_hash, body_hash, sink)
    try:
        for seg, (first, n) in enumerate(_segments(size)):
            plain, cipher = pipeline.slot(seg)
            chunks = -(-n // CHUNK_SIZE)
            cipher = cipher[: n + chunks * TAG_SIZE]
            plain = plain[:n]
            _read_exact(src, cipher)
            pos = cpos = 0
            index = first
            while pos < n:
                m = min(CHUNK_SIZE, n - pos)
                try:
                    aead.decrypt_into(
                        chunk_nonce(index, index == last_chunk),
                        cipher[cpos : cpos + m + TAG_SIZE],
                        None,
                        plain[pos : pos + m],
                    )
                except InvalidTag as exc:
                    raise PayloadError("a chunk failed to authenticate") from exc
                pos += m
                cpos += m + TAG_SIZE
                index += 1
            pipeline.submit(seg, plain, cipher, plain)
            if progress is not None:
                progress(n)
        pipeline.finish()
    except BaseException:
        pipeline.abandon()
        raise

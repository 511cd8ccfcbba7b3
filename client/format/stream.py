"""The payload: a STREAM of AES-256-GCM chunks, sealed and opened in bounded memory.

Chunk i of n is encrypted under the per-consignment payload key with the nonce
chunk_nonce(i, i == n - 1), so truncation, extension, reordering and bit flips all
fail authentication. Work runs in segments of SEGMENT_CHUNKS chunks split between
two threads that each take about half of it: a helper thread reads segment i + 1
and feeds the bytes to the BLAKE3 hashes, while the calling thread encrypts (or
decrypts) segment i and writes it out. AES-GCM, BLAKE3 and file I/O all release
the GIL, so the two cores stay busy. Memory is SLOTS segments whatever the size.
A payload of one segment has nothing to overlap: it runs in the calling thread,
with buffers of its own size (no thread started, no whole segment allocated).

This module must never hand a byte of plaintext to its sink before the chunk that
holds it has authenticated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.format.header import CHUNK_SIZE, TAG_SIZE, chunk_nonce

SEGMENT_CHUNKS = 16
SEGMENT = SEGMENT_CHUNKS * CHUNK_SIZE
SEGMENT_CT = SEGMENT_CHUNKS * (CHUNK_SIZE + TAG_SIZE)
SLOTS = 3  # segment i being processed, i + 1 being read, i - 1 being hashed

Progress = Callable[[int], None]


class PayloadError(Exception):
    """A chunk failed to authenticate, or the payload ended early."""


class _Segments:
    """Buffers for SLOTS segments and the helper thread, whose queue is FIFO.

    The helper runs, in order: read(0), read(1), after(0), read(2), after(1), ...
    so when read(i) is done, after(i - 2) is done too, and slot i % SLOTS is free.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.last_chunk = max(1, -(-size // CHUNK_SIZE)) - 1
        # A payload of one segment (most consignments: up to 1 MiB) has nothing
        # to overlap: its steps run in the calling thread, in the same order,
        # and its buffers are its own size, not a whole segment's.
        one = size <= SEGMENT
        self._helper: ThreadPoolExecutor | _Inline = (
            _Inline() if one else ThreadPoolExecutor(max_workers=1, thread_name_prefix="consign-io")
        )
        plain = min(size, SEGMENT)
        cipher = plain + -(-plain // CHUNK_SIZE) * TAG_SIZE
        slots = 1 if one else SLOTS
        self._buffers = [(bytearray(plain), bytearray(cipher)) for _ in range(slots)]
        self._pending: deque[Future[Any]] = deque()

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """(segment number, first chunk index, plaintext bytes) of every segment."""
        offset = seg = 0
        while offset < self.size:
            n = min(SEGMENT, self.size - offset)
            yield seg, offset // CHUNK_SIZE, n
            offset += n
            seg += 1

    def views(self, seg: int, n: int) -> tuple[memoryview, memoryview]:
        plain, cipher = self._buffers[seg % len(self._buffers)]
        chunks = -(-n // CHUNK_SIZE)
        return memoryview(plain)[:n], memoryview(cipher)[: n + chunks * TAG_SIZE]

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # re-raises a failed hash here
        future = self._helper.submit(fn, *args)
        self._pending.append(future)
        return future

    def finish(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        self._helper.shutdown(wait=True)

    def abandon(self) -> None:
        self._helper.shutdown(wait=True, cancel_futures=True)


class _Inline:
    """The helper of a one-segment payload: runs each step at once, here."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # re-raised by .result(), as from a thread
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def _chunks(first: int, n: int) -> Iterator[tuple[int, int, int, int]]:
    """(chunk index, plaintext offset, ciphertext offset, plaintext length) in a segment."""
    pos = cpos = 0
    index = first
    while pos < n:
        m = min(CHUNK_SIZE, n - pos)
        yield index, pos, cpos, m
        pos += m
        cpos += m + TAG_SIZE
        index += 1


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
    segments = _Segments(size)
    plan = list(segments)

    def read(seg: int, n: int) -> None:
        plain, _ = segments.views(seg, n)
        fill(plain)
        plain_hash.update(plain)

    try:
        reads = {0: segments.submit(read, 0, plan[0][2])}
        for seg, first, n in plan:
            if seg + 1 < len(plan):
                reads[seg + 1] = segments.submit(read, seg + 1, plan[seg + 1][2])
            reads.pop(seg).result()
            plain, cipher = segments.views(seg, n)
            for index, pos, cpos, m in _chunks(first, n):
                aead.encrypt_into(
                    chunk_nonce(index, index == segments.last_chunk),
                    plain[pos : pos + m],
                    None,
                    cipher[cpos : cpos + m + TAG_SIZE],
                )
            out.write(cipher)
            segments.submit(body_hash.update, cipher)
            if progress is not None:
                progress(n)
        segments.finish()
    except BaseException:
        segments.abandon()
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
    segments = _Segments(size)
    plan = list(segments)

    def read(seg: int, n: int) -> None:
        _, cipher = segments.views(seg, n)
        _read_exact(src, cipher)
        body_hash.update(cipher)

    try:
        reads = {0: segments.submit(read, 0, plan[0][2])}
        for seg, first, n in plan:
            if seg + 1 < len(plan):
                reads[seg + 1] = segments.submit(read, seg + 1, plan[seg + 1][2])
            reads.pop(seg).result()
            plain, cipher = segments.views(seg, n)
            for index, pos, cpos, m in _chunks(first, n):
                try:
                    aead.decrypt_into(
                        chunk_nonce(index, index == segments.last_chunk),
                        cipher[cpos : cpos + m + TAG_SIZE],
                        None,
                        plain[pos : pos + m],
                    )
                except InvalidTag as exc:
                    raise PayloadError("a chunk failed to authenticate") from exc
            sink(plain)
            segments.submit(plain_hash.update, plain)
            if progress is not None:
                progress(n)
        segments.finish()
    except BaseException:
        segments.abandon()
        raise

"""Opening's reads and writes: the consignment read from its file, and the files
it holds written out.

`Unpacker` stages every file in a private directory inside the target (or a
temporary file, for a stream) and moves them all into place, or none, only in
commit(), after the last chunk, the signature and the commitment have checked
(`place.py`); abort() leaves nothing behind, not even the directories it made.
This module must never write outside the target directory or follow a link.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from client.errors import ClientError, UnsafePathError
from client.format.manifest import (
    MAX_MANIFEST,
    FileEntry,
    ManifestFormatError,
    check_entries,
    decode,
)
from client.format.names import HINT, NameRefused
from client.format.place import Target


@contextlib.contextmanager
def open_input(source: Path | str | BinaryIO) -> Iterator[BinaryIO]:
    """The consignment to read: a path opened (a local file problem is a
    `ClientError` saying which, not a verdict on the consignment), or a stream."""
    if not isinstance(source, str | Path):
        yield source
        return
    try:
        f = open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ClientError(
            f"cannot read {str(source)!r}: {exc.strerror}",
            hint="check the path and that you may read the file",
        ) from exc
    with f:
        yield f


def read_up_to(src: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes: fewer only where the stream ends."""
    data = b""
    while len(data) < n and (block := src.read(n - len(data))):
        data += block
    return data


class Unpacker:
    """Receives authenticated plaintext in order and stages the files it describes.

    Nothing here judges the consignment: what the manifest asks that cannot be
    done (an unsafe name, a target that exists) is kept in `refusal`, raised by
    `commit` only, which the caller calls once the trailer signature proved
    the sender wrote the manifest. Until then the bytes of a refused
    consignment are read and dropped.
    """

    def __init__(self, destination: Path | BinaryIO, payload_size: int, overwrite: bool) -> None:
        self._dest = destination
        self._payload_size = payload_size
        self._overwrite = overwrite
        self._head = bytearray()
        self._need_head: int | None = None  # manifest length once known
        self.entries: list[FileEntry] | None = None
        self._index = -1
        self._left = 0
        self._out: BinaryIO | None = None
        self._target: Target | None = None
        self._spool: BinaryIO | None = None
        #: A refusal found in the manifest or the target, raised by commit() only.
        self.refusal: ClientError | None = None

    # -- receiving plaintext ------------------------------------------------------
    def __call__(self, data: memoryview) -> None:
        pos = 0
        if self.entries is None:
            pos = self._take_head(data)
            if self.entries is None:
                return
        if self.refusal is not None:
            return
        while pos < len(data):
            while self._left == 0:
                self._open_next()
            assert self._out is not None
            n = min(self._left, len(data) - pos)
            try:
                self._out.write(data[pos : pos + n])
            except OSError as exc:
                raise ClientError(f"cannot write the opened files: {exc.strerror}") from exc
            pos += n
            self._left -= n

    def _take_head(self, data: memoryview) -> int:
        pos = 0
        if self._need_head is None:
            n = min(4 - len(self._head), len(data))
            self._head += data[:n]
            pos = n
            if len(self._head) < 4:
                return pos
            self._need_head = int.from_bytes(self._head, "big")
            self._head.clear()
            if not 2 <= self._need_head <= MAX_MANIFEST:
                raise ManifestFormatError
        n = min(self._need_head - len(self._head), len(data) - pos)
        self._head += data[pos : pos + n]
        pos += n
        if len(self._head) == self._need_head:
            entries = decode(bytes(self._head))
            if 4 + self._need_head + sum(e.size for e in entries) != self._payload_size:
                raise ManifestFormatError
            self.entries = entries
            try:
                check_entries(entries)
            except NameRefused as exc:
                self.refusal = UnsafePathError(str(exc), hint=HINT)
                return pos
            self._prepare(entries)
        return pos

    def _open_next(self) -> None:
        assert self.entries is not None
        self._close_out()
        self._index += 1
        if self._index >= len(self.entries):
            raise ManifestFormatError  # more bytes than the manifest declared
        self._left = self.entries[self._index].size
        if self._target is not None:
            try:
                fd = self._target.create_staged(self._index)
            except OSError as exc:
                raise ClientError(f"cannot write the opened files: {exc.strerror}") from exc
            self._out = os.fdopen(fd, "wb")
        else:
            assert self._spool is not None
            self._out = self._spool

    def _close_out(self) -> None:
        if self._out is not None and self._out is not self._spool:
            self._out.close()
        self._out = None

    # -- staging, commit, abort ---------------------------------------------------
    def _prepare(self, entries: list[FileEntry]) -> None:
        if not isinstance(self._dest, Path):
            if len(entries) != 1:
                self.refusal = ClientError(
                    f"the consignment holds {len(entries)} files, not one",
                    hint="open it into a directory instead of a stream",
                )
                return
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115
            return
        self._target = Target.open(self._dest)
        try:
            # Early, to spare writing what cannot be placed; placing checks again.
            self._target.check([e.name for e in entries], overwrite=self._overwrite)
        except UnsafePathError as exc:
            self.refusal = exc
        except ClientError:
            pass  # a local problem now may be gone at the end; place() will say

    def commit(self) -> list[FileEntry]:
        """Move every verified file into place, all or nothing. Call only after
        every check passed; raises the refusal found on the way, if any."""
        assert self.entries is not None
        self._close_out()
        if self.refusal is not None:
            raise self.refusal
        if self._target is None:
            assert self._spool is not None
            assert not isinstance(self._dest, Path)
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, self._dest, 1 << 20)
            self._spool.close()
            self._spool = None
            return self.entries
        names = [e.name for e in self.entries]
        self._target.place(names, [e.mode for e in self.entries], overwrite=self._overwrite)
        self._target.close(keep_target=True)
        self._target = None
        return self.entries

    def abort(self) -> None:
        """Remove everything staged and every directory made; the target is left
        as it was."""
        with contextlib.suppress(OSError):
            self._close_out()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._target is not None:
            self._target.close(keep_target=False)
            self._target = None

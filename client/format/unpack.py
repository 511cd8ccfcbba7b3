"""Opening's reads and writes: the consignment read from its file, and the files
it holds written out.

`Unpacker` stages every file in a private directory (or a temporary file) and
moves it into place only in commit(), after the last chunk, the signature and
the commitment have checked; abort() leaves nothing behind. This module must
never write outside the target directory or follow a link out of it.
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


def _is_within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


class Unpacker:
    """Receives authenticated plaintext in order and stages the files it describes."""

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
        self._staging: Path | None = None
        self._spool: BinaryIO | None = None
        self._created_dest = False
        #: A refusal found in the manifest, raised by the caller only once the
        #: trailer signature proved the sender wrote it; until then bytes are dropped.
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
                self._prepare(entries)
            except ClientError as exc:
                self.refusal = exc
        return pos

    def _open_next(self) -> None:
        assert self.entries is not None
        if self._out is not None and self._staging is not None:
            self._out.close()
        self._index += 1
        if self._index >= len(self.entries):
            raise ManifestFormatError  # more bytes than the manifest declared
        self._left = self.entries[self._index].size
        if self._staging is not None:
            self._out = open(self._staging / str(self._index), "xb")  # noqa: SIM115
        else:
            assert self._spool is not None
            self._out = self._spool

    # -- staging, commit, abort ---------------------------------------------------
    def _prepare(self, entries: list[FileEntry]) -> None:
        if not isinstance(self._dest, Path):
            if len(entries) != 1:
                raise ClientError(
                    f"the consignment holds {len(entries)} files, not one",
                    hint="open it into a directory instead of a stream",
                )
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115
            return
        for entry in entries:
            self._check_target(entry)
        try:
            if not self._dest.exists():
                self._dest.mkdir(parents=True)
                self._created_dest = True
            self._staging = Path(tempfile.mkdtemp(prefix=".consign-partial-", dir=self._dest))
        except OSError as exc:
            raise ClientError(
                f"cannot write into {str(self._dest)!r}: {exc.strerror}",
                hint="choose a directory you can write to",
            ) from exc

    def _check_target(self, entry: FileEntry) -> Path:
        assert isinstance(self._dest, Path)
        root = self._dest.resolve()
        target = self._dest / entry.name
        # Every existing ancestor must be a real directory inside the root.
        for ancestor in reversed(target.relative_to(self._dest).parents):
            path = self._dest / ancestor
            if path.is_symlink() and not _is_within(path.resolve(), root):
                raise UnsafePathError(
                    f"refusing {entry.name!r}: {str(path)!r} is a link pointing outside "
                    "the target directory"
                )
            if path.exists() and not path.is_dir():
                raise UnsafePathError(f"refusing {entry.name!r}: {str(path)!r} is not a directory")
        if target.is_symlink():
            raise UnsafePathError(f"refusing {entry.name!r}: the target is a symbolic link")
        if target.exists() and (target.is_dir() or not self._overwrite):
            raise UnsafePathError(
                f"refusing {entry.name!r}: {str(target)!r} already exists",
                hint="open into an empty directory, or allow overwriting",
            )
        if not _is_within(target.parent.resolve(), root):
            raise UnsafePathError(f"refusing {entry.name!r}: it resolves outside the target")
        return target

    def commit(self) -> list[FileEntry]:
        """Move every verified file into place. Call only after every check passed."""
        assert self.entries is not None
        if self._out is not None and self._staging is not None:
            self._out.close()
            self._out = None
        if self._staging is None:
            assert self._spool is not None
            assert not isinstance(self._dest, Path)
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, self._dest, 1 << 20)
            self._spool.close()
            return self.entries
        for i, entry in enumerate(self.entries):
            staged = self._staging / str(i)
            if entry.size == 0 and not staged.exists():
                staged.touch()
            target = self._check_target(entry)  # again: the tree may have changed
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(staged, entry.mode)
            os.replace(staged, target)
        self._staging.rmdir()
        self._staging = None
        return self.entries

    def abort(self) -> None:
        """Remove everything staged; the target is left as it was."""
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.close()
            self._out = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if self._created_dest and isinstance(self._dest, Path):
            with contextlib.suppress(OSError):
                self._dest.rmdir()

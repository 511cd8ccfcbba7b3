"""Where payload bytes come from when sealing and go to when opening.

Sealing reads the manifest and then each file in turn, refusing a file that shrinks
or grows while it is read. Opening stages every file in a private directory (or a
temporary file) and moves it into place only in commit(), after the last chunk,
the signature and the commitment have checked; abort() leaves nothing behind. This
module must never write outside the target directory or follow a link out of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from client._manifest import MAX_MANIFEST, FileEntry, ManifestFormatError, check_entries, decode
from client.errors import ClientError, SealError, UnsafePathError

Opener = Callable[[], BinaryIO]


class ConcatReader:
    """Fills views exactly from the manifest bytes followed by each file's bytes."""

    def __init__(self, prefix: bytes, files: list[tuple[FileEntry, Opener]]) -> None:
        self._prefix = memoryview(prefix)
        self._files = files
        self._index = -1
        self._current: BinaryIO | None = None
        self._left = 0

    def _next_file(self) -> None:
        self._close_current()
        self._index += 1
        entry, opener = self._files[self._index]
        try:
            self._current = opener()
        except OSError as exc:
            raise SealError(f"cannot read {entry.name!r}: {exc.strerror}") from exc
        self._left = entry.size

    def _close_current(self) -> None:
        if self._current is None:
            return
        entry = self._files[self._index][0]
        try:
            extra = self._current.read(1)
        finally:
            self._current.close()
            self._current = None
        if extra:
            raise SealError(
                f"{entry.name!r} grew while it was being sealed",
                hint="seal it again once nothing is writing to it",
            )

    def __call__(self, view: memoryview) -> None:
        pos = 0
        if self._prefix:
            n = min(len(self._prefix), len(view))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            pos = n
        while pos < len(view):
            while self._current is None or self._left == 0:
                self._next_file()
            assert self._current is not None
            want = min(self._left, len(view) - pos)
            readinto = getattr(self._current, "readinto", None)
            if readinto is not None:
                got = readinto(view[pos : pos + want])
            else:
                data = self._current.read(want)
                got = len(data)
                view[pos : pos + got] = data
            if not got:
                entry = self._files[self._index][0]
                raise SealError(
                    f"{entry.name!r} shrank while it was being sealed",
                    hint="seal it again once nothing is writing to it",
                )
            pos += got
            self._left -= got

    def finish(self) -> None:
        """Check that the last file ended where its declared size said."""
        while self._index + 1 < len(self._files):
            self._next_file()  # zero-length files at the end
            if self._left:
                raise SealError("internal error: payload size does not match the files")
        self._close_current()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


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

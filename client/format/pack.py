"""Sealing's reads and writes: the files to seal read in order, and the sealed
consignment written out.

`ConcatReader` fills the payload with the manifest and then each file in turn,
refusing a file that shrinks or grows while it is read. `atomic_output` writes
the consignment to a temporary file and renames it into place only once sealing
succeeded. This module must never seal a file that changed size while it was
read, nor leave a partial consignment under the name asked for; a temporary
file a killed seal left beside it goes at the next seal there (`leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from client.errors import SealError
from client.format.leftovers import remove_dead, temporary_prefix
from client.format.manifest import FileEntry

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


def path_opener(path: Path) -> Opener:
    """Opens the file at `path` when its turn comes."""
    return lambda: open(path, "rb", buffering=0)


def stream_opener(fileobj: BinaryIO) -> Opener:
    """Hands over a stream the caller opened."""
    return lambda: fileobj


def _remove_dead_beside(target: Path) -> None:
    """Remove what a seal killed in the same directory before left there."""
    try:
        fd = os.open(target.parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # mkstemp says what is wrong with the directory
    try:
        remove_dead(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(output: Path | str | BinaryIO) -> Iterator[BinaryIO]:
    """Where the consignment goes: a stream as given, or a temporary file beside
    the path, synced and renamed to it only if the block succeeds."""
    if not isinstance(output, str | Path):
        yield output
        return
    target = Path(output)
    _remove_dead_beside(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(), dir=target.parent or ".")
    except OSError as exc:
        directory = target.parent
        hint = (
            f"the directory {str(directory)!r} does not exist; create it or choose another output"
            if isinstance(exc, FileNotFoundError)
            else f"check that you may write to the directory {str(directory)!r}"
        )
        raise SealError(f"cannot write {str(target)!r}: {exc.strerror}", hint) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

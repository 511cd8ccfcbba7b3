"""Reading and writing the escrow's and users' files, with errors a user can act on.

Private files are written with mode 0600, atomically (a temporary file renamed
into place), and never over an existing file unless asked. This module must never
log or print file contents.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from broker.errors import FileError

__all__ = [
    "read_bytes",
    "write_bytes",
]


def read_bytes(path: Path, what: str, limit: int = 1 << 20) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise FileError(
            f"cannot read {what} {path}: {exc.strerror or exc}", "check the path"
        ) from exc
    if len(data) > limit:
        raise FileError(f"{what} {path} is larger than {limit} bytes", "check the path")
    return data


def write_bytes(path: Path, data: bytes, *, private: bool, overwrite: bool = False) -> None:
    """Write `data` to `path` atomically; refuse to replace a file unless `overwrite`."""
    if path.exists() and not overwrite:
        raise FileError(
            f"{path} already exists", "choose another file name or move the old file away"
        )
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        try:
            os.fchmod(fd, 0o600 if private else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # fails if `path` appeared meanwhile
                os.unlink(tmp)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except FileExistsError as exc:
        raise FileError(
            f"{path} already exists", "choose another file name or move the old file away"
        ) from exc
    except OSError as exc:
        raise FileError(
            f"cannot write {path}: {exc.strerror or exc}", "check the directory and permissions"
        ) from exc

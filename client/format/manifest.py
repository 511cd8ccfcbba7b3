"""The list of files inside a consignment: its encoding, and the files to seal.

The manifest is the first thing in the encrypted payload: a 4-byte big-endian
length, then canonical JSON {"files": [{"mode", "name", "size"}, ...]}, then the
files' bytes in that order. `decode` parses it strictly (whatever JSON a sender
put there, the answer is a list of entries or `ManifestFormatError`); the names
are judged by `names.py`, at seal and at open. This module must never let a
name reach the file system that could land outside the target directory.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from broker.canonical import canonical_json, parse_canonical_json
from broker.errors import BrokerError
from client.errors import SealError
from client.format.names import (
    HINT,
    MAX_COMPONENT,
    MAX_NAME,
    NameRefused,
    check_file_name,
    check_names,
)

__all__ = [
    "MAX_COMPONENT",
    "MAX_MANIFEST",
    "MAX_NAME",
    "PERMISSION_BITS",
    "FileEntry",
    "ManifestFormatError",
    "check_entries",
    "check_file_name",
    "collect",
    "decode",
    "encode",
]

MAX_MANIFEST = 16 * 1024 * 1024
PERMISSION_BITS = 0o777
#: The largest size a manifest entry may give (the canonical JSON integer range).
MAX_SIZE = 2**53 - 1


@dataclass(frozen=True)
class FileEntry:
    """One file in a consignment: its relative POSIX name, size and permission bits."""

    name: str
    size: int
    mode: int = 0o644


def check_entries(entries: list[FileEntry]) -> None:
    """The names follow the rules and do not collide (`NameRefused` if not)."""
    check_names(e.name for e in entries)


def _refused_at_seal(exc: NameRefused) -> SealError:
    return SealError(str(exc), hint=HINT)


def encode(entries: list[FileEntry]) -> bytes:
    """The manifest's bytes (length prefix included); `SealError` for a name
    the rules refuse."""
    try:
        check_entries(entries)
    except NameRefused as exc:
        raise _refused_at_seal(exc) from None
    for e in entries:
        if not 0 <= e.size <= MAX_SIZE or not 0 <= e.mode <= PERMISSION_BITS:
            raise SealError(f"file {e.name!r} has a size or mode out of range")
    body = canonical_json(
        {"files": [{"mode": e.mode, "name": e.name, "size": e.size} for e in entries]}
    )
    if len(body) > MAX_MANIFEST:
        raise SealError("too many files for one consignment (the manifest exceeds 16 MiB)")
    return len(body).to_bytes(4, "big") + body


class ManifestFormatError(Exception):
    """The decrypted manifest is not canonical (only a forged consignment has one)."""


def decode(body: bytes) -> list[FileEntry]:
    """Parse manifest JSON strictly: canonical JSON (broker.canonical: UTF-8,
    no lone surrogates, integers within +-(2**53-1), nesting within 32) of
    exactly the manifest's shape. Names are judged apart, by `check_entries`."""
    try:
        data = parse_canonical_json(body, "manifest")
    except (BrokerError, ValueError, RecursionError):
        raise ManifestFormatError from None
    if not isinstance(data, dict) or set(data) != {"files"} or not isinstance(data["files"], list):
        raise ManifestFormatError
    entries = []
    for item in data["files"]:
        if (
            not isinstance(item, dict)
            or set(item) != {"mode", "name", "size"}
            or not isinstance(item["name"], str)
            or type(item["size"]) is not int
            or type(item["mode"]) is not int
            or item["size"] < 0
            or not 0 <= item["mode"] <= PERMISSION_BITS
        ):
            raise ManifestFormatError
        entries.append(FileEntry(item["name"], item["size"], item["mode"]))
    return entries


def collect(paths: list[Path]) -> list[tuple[FileEntry, Path]]:
    """Expand files and directories into manifest entries with their source paths.

    A file given directly is named by its base name; a directory by its own name
    followed by the relative path of each regular file below it. A symbolic link
    inside a directory is followed only if it stays inside that directory.
    """
    found: list[tuple[FileEntry, Path]] = []
    for given in paths:
        try:
            st = given.stat()
        except OSError as exc:
            raise SealError(f"cannot read {str(given)!r}: {exc.strerror}") from exc
        if stat.S_ISREG(st.st_mode):
            entry = FileEntry(_nfc(given.name), st.st_size, st.st_mode & PERMISSION_BITS)
            found.append((entry, given))
        elif stat.S_ISDIR(st.st_mode):
            found.extend(_walk(given))
        else:
            raise SealError(f"{str(given)!r} is neither a regular file nor a directory")
    try:
        check_entries([e for e, _ in found])
    except NameRefused as exc:
        raise _refused_at_seal(exc) from None
    return found


def _walk(root: Path) -> list[tuple[FileEntry, Path]]:
    real_root = root.resolve()
    prefix = real_root.name
    if not prefix:
        raise SealError(f"cannot seal {str(root)!r} itself: name a directory below it")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
            path = base / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise SealError(
                        f"refusing {str(path)!r}: it is a link pointing outside {str(root)!r}",
                        hint="copy the file into the directory, or name it directly",
                    )
                if target.is_dir():
                    continue  # reached through its real path inside the root
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = path.relative_to(root).as_posix()
            entry = FileEntry(_nfc(f"{prefix}/{rel}"), st.st_size, st.st_mode & PERMISSION_BITS)
            found.append((entry, path))
    return found


def _nfc(name: str) -> str:
    """A name read from a file system, in NFC (macOS's HFS+ hands out NFD);
    a name that is not UTF-8 (surrogate escapes) is left for the rules to refuse."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name
    return unicodedata.normalize("NFC", name)

"""The list of files inside a consignment, and the rules for their names.

The manifest is the first thing in the encrypted payload: a 4-byte big-endian
length, then canonical JSON {"files": [{"mode", "name", "size"}, ...]}, then the
files' bytes in that order. Names are checked on both sides; this module must never
let a name reach the file system that could land outside the target directory.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from broker.canonical import canonical_json
from client.errors import SealError, UnsafePathError

MAX_MANIFEST = 16 * 1024 * 1024
MAX_NAME = 4096
MAX_COMPONENT = 255
PERMISSION_BITS = 0o777


@dataclass(frozen=True)
class FileEntry:
    """One file in a consignment: its relative POSIX name, size and permission bits."""

    name: str
    size: int
    mode: int = 0o644


def check_file_name(name: str) -> str:
    """Refuse any name that is absolute, climbs out, or is ambiguous on some system."""
    why = None
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        why = "is empty or too long"
    elif name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        why = "is absolute"
    elif "\\" in name or "\x00" in name or any(ord(c) < 0x20 for c in name):
        why = "contains a backslash or a control character"
    else:
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            why = "has an empty, '.' or '..' component"
        elif any(len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT for p in parts):
            why = "has a component longer than 255 bytes"
    if why is not None:
        raise UnsafePathError(
            f"refusing file name {name!r}: it {why}",
            hint="file names in a consignment must be relative paths inside the target",
        )
    return name


def check_entries(entries: list[FileEntry]) -> None:
    seen: set[str] = set()
    for e in entries:
        check_file_name(e.name)
        if e.name in seen:
            raise UnsafePathError(f"refusing file name {e.name!r}: it appears twice")
        seen.add(e.name)
    for e in entries:
        parent = PurePosixPath(e.name).parent
        while str(parent) != ".":
            if str(parent) in seen:
                raise UnsafePathError(
                    f"refusing file name {e.name!r}: {str(parent)!r} is also a file"
                )
            parent = parent.parent


def encode(entries: list[FileEntry]) -> bytes:
    check_entries(entries)
    body = canonical_json(
        {"files": [{"mode": e.mode, "name": e.name, "size": e.size} for e in entries]}
    )
    if len(body) > MAX_MANIFEST:
        raise SealError("too many files for one consignment (the manifest exceeds 16 MiB)")
    return len(body).to_bytes(4, "big") + body


class ManifestFormatError(Exception):
    """The decrypted manifest is not canonical (only a forged consignment has one)."""


def decode(body: bytes) -> list[FileEntry]:
    """Parse manifest JSON strictly; names are checked separately by check_entries."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestFormatError from exc
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
    if canonical_json(data) != body:
        raise ManifestFormatError
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
            found.append((FileEntry(given.name, st.st_size, st.st_mode & PERMISSION_BITS), given))
        elif stat.S_ISDIR(st.st_mode):
            found.extend(_walk(given))
        else:
            raise SealError(f"{str(given)!r} is neither a regular file nor a directory")
    entries = [e for e, _ in found]
    check_entries(entries)
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
            entry = FileEntry(f"{prefix}/{rel}", st.st_size, st.st_mode & PERMISSION_BITS)
            found.append((entry, path))
    return found

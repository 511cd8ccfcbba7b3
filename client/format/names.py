"""The rules for the file names inside a consignment (docs/format.md, "File
names"), the same at seal and at open.

A name is a relative POSIX path in Unicode NFC, without control characters,
bidirectional formatting characters or line separators, at most `MAX_NAME`
bytes of UTF-8 with components of at most `MAX_COMPONENT` bytes; and no two
names of one consignment may be taken for the same file, or for a file and a
directory, by a case-insensitive or normalising file system (`fold`).

Pure functions: they raise `NameRefused` (the caller turns it into a
`SealError` or an `UnsafePathError`) and never touch the file system. This
module must never accept a name that could leave the target directory.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Final

#: Bytes of UTF-8 in a whole name: a name fits, as a path relative to the
#: target directory, in one system call everywhere (macOS's PATH_MAX is 1024
#: bytes with the terminating NUL; Linux's 4096).
MAX_NAME: Final = 1023
#: Bytes of UTF-8 in one component: ext4, XFS, Btrfs, ZFS and APFS hold 255
#: bytes; NTFS, exFAT and FAT hold 255 UTF-16 units, never fewer than the bytes.
MAX_COMPONENT: Final = 255

#: Characters no name may hold besides C0 (U+0000-U+001F), DEL (U+007F) and C1
#: (U+0080-U+009F): the backslash (a separator on Windows), the line and
#: paragraph separators, and the bidirectional formatting characters, which make
#: a name print as another ("txt.<RLO>exe").
_REFUSED: Final = frozenset(
    "\\\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

HINT: Final = (
    "file names in a consignment are relative NFC paths without control characters, "
    "no two alike but for case, at most 1023 bytes with components of at most 255"
)


class NameRefused(Exception):
    """A name breaks the rules; the message says which name (escaped) and why."""


def _control(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or c in _REFUSED


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _why(name: object) -> str | None:
    """Why `name` alone is refused, or None."""
    if not isinstance(name, str):
        return "is not a string"
    try:
        size = _utf8_len(name)
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size == 0 or size > MAX_NAME:
        return f"is empty or longer than {MAX_NAME} bytes"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is absolute"
    if any(_control(c) for c in name):
        return "contains a backslash, a control, bidirectional or line-separator character"
    if not unicodedata.is_normalized("NFC", name):
        return "is not in Unicode normalization form C (NFC)"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component"
    if any(_utf8_len(p) > MAX_COMPONENT for p in parts):
        return f"has a component longer than {MAX_COMPONENT} bytes"
    return None


def check_file_name(name: str) -> str:
    """`name` if it follows the rules on its own, else `NameRefused`."""
    why = _why(name)
    if why is not None:
        raise NameRefused(f"refusing file name {name!r}: it {why}")
    return name


def fold(name: str) -> str:
    """The key under which a case-insensitive or normalising file system may
    take two names for one: NFD(casefold(upper(NFD(name)))). Full case folding
    after upper-casing joins what Unicode case folding joins (APFS, ZFS) and
    what an upper-case table joins (NTFS, exFAT: "i" and the dotless U+0131)."""
    decomposed = unicodedata.normalize("NFD", name)
    return unicodedata.normalize("NFD", decomposed.upper().casefold())


def check_names(names: Iterable[str]) -> None:
    """Every name follows the rules, and no two collide: equal under `fold`,
    or one (folded) a directory of another."""
    files: dict[str, str] = {}
    ordered = []
    for name in names:
        check_file_name(name)
        key = fold(name)
        if key in files:
            other = files[key]
            why = "appears twice" if other == name else f"collides with {other!r} (case or form)"
            raise NameRefused(f"refusing file name {name!r}: it {why}")
        files[key] = name
        ordered.append((name, key))
    for name, key in ordered:
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                raise NameRefused(
                    f"refusing file name {name!r}: {files[parent]!r} is a file, not a directory"
                )

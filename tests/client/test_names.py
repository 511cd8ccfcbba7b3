"""The rules for file names (docs/format.md, "File names"), enforced at seal and
at open: NFC only, no control characters, no two names that one case-insensitive
or normalising file system would take for the same file, and lengths every
common file system can hold. A refused name changes nothing on either side."""

from __future__ import annotations

import io
import json
import os
import unicodedata
from pathlib import Path

import pytest

from client.consignment import Source, seal, unseal
from client.errors import OpenError, SealError, UnsafePathError
from client.format.manifest import (
    MAX_COMPONENT,
    MAX_NAME,
    FileEntry,
    check_entries,
    check_file_name,
)
from tests.client.consign_helpers import ALICE, ESCROW, RECEIVERS, seal_raw_manifest

BOB = RECEIVERS[0]


def _manifest(names: list[str]) -> tuple[bytes, bytes]:
    body = json.dumps(
        {"files": [{"mode": 420, "name": n, "size": 1} for n in names]},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    ).encode()
    return len(body).to_bytes(4, "big") + body, b"x" * len(names)


def _open(names: list[str], dest: Path, *, damage_trailer: bool = False) -> None:
    manifest, payload = _manifest(names)
    sealed, deposit = seal_raw_manifest(manifest, payload, BOB)
    if damage_trailer:
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    unseal(
        io.BytesIO(sealed),
        dest,
        identity=BOB.encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )


def _seal(names: list[str], out: Path) -> None:
    seal(
        [Source(n, io.BytesIO(b"x"), 1) for n in names],
        out,
        sender=ALICE.sender,
        receivers=[BOB.recipient],
        escrow=ESCROW,
    )


NFD_E = unicodedata.normalize("NFD", "\u00e9")  # e + U+0301
LONG_COMPONENT = "c" * MAX_COMPONENT

REFUSED = {
    "del": ["a\x7fb"],
    "c1-csi": ["a\x9b31mred"],
    "c1-nel": ["a\x85b"],
    "c0-escape": ["a\x1b[31mred"],
    "tab": ["a\tb"],
    "line-separator": ["a\u2028b"],
    "bidi-override": ["txt.\u202eexe"],
    "bidi-isolate": ["a\u2066b"],
    "not-nfc": [f"caf{NFD_E}"],
    "kelvin-sign": ["\u212a"],
    "case-collision": ["README", "readme"],
    "case-collision-nested": ["Docs/a", "docs/A"],
    "sharp-s-collision": ["stra\u00dfe", "STRASSE"],
    "dotless-i-collision": ["\u0131", "I"],
    "file-vs-directory-by-case": ["a", "A/b"],
    "nfc-collision": ["\u00e9", "\u00c9"],
    "name-too-long": ["/".join(["d" * 200] * 20)],  # 4,019 bytes, each component < 255
    "name-4095-bytes": ["/".join([LONG_COMPONENT] * 16)],
    "component-too-long": ["c" * (MAX_COMPONENT + 1)],
    "component-too-long-utf8": ["\u00e9" * 128],  # 256 bytes of UTF-8
    "trailing-slash": ["a/"],
    "empty": [""],
    "dot": ["."],
    "dotdot": ["a/../b"],
}


@pytest.mark.parametrize("names", REFUSED.values(), ids=REFUSED.keys())
def test_refused_names_fail_at_open_as_unsafe_and_write_nothing(
    tmp_path: Path, names: list[str]
) -> None:
    dest = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(UnsafePathError) as info:
        _open(names, dest)
    assert isinstance(info.value, OpenError)
    assert "refusing file name" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("names", REFUSED.values(), ids=REFUSED.keys())
def test_refused_names_under_a_bad_trailer_are_the_one_open_error(
    tmp_path: Path, names: list[str]
) -> None:
    dest = tmp_path / "out"
    with pytest.raises(OpenError) as info:
        _open(names, dest, damage_trailer=True)
    assert type(info.value) is OpenError
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("names", REFUSED.values(), ids=REFUSED.keys())
def test_refused_names_fail_at_seal_and_write_nothing(tmp_path: Path, names: list[str]) -> None:
    out = tmp_path / "c.consignment"
    with pytest.raises(SealError, match="refusing file name") as info:
        _seal(names, out)
    assert not isinstance(info.value, OpenError)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_name_is_shown_escaped(tmp_path: Path) -> None:
    with pytest.raises(SealError) as info:
        _seal(["a\x9b31mb"], tmp_path / "c")
    assert "\x9b" not in str(info.value)
    assert "\\x9b" in str(info.value)


def test_colliding_files_in_a_directory_are_refused_at_seal(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "README").write_bytes(b"1")
    (src / "readme").write_bytes(b"2")
    out = tmp_path / "c.consignment"
    with pytest.raises(SealError, match="refusing file name"):
        seal([src], out, sender=ALICE.sender, receivers=[BOB.recipient], escrow=ESCROW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_decomposed_name_on_disk_is_sealed_in_nfc(tmp_path: Path) -> None:
    """macOS (HFS+) hands out names in NFD: a writer seals them in NFC."""
    src = tmp_path / "src"
    src.mkdir()
    (src / f"caf{NFD_E}.txt").write_bytes(b"menu")
    out = tmp_path / "c.consignment"
    deposit = seal([src], out, sender=ALICE.sender, receivers=[BOB.recipient], escrow=ESCROW)
    opened = unseal(
        out,
        tmp_path / "opened",
        identity=BOB.encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )
    assert [f.name for f in opened.files] == ["src/caf\u00e9.txt"]
    assert (tmp_path / "opened" / "src" / "caf\u00e9.txt").read_bytes() == b"menu"


def test_an_undecodable_name_on_disk_is_refused_at_seal(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok").write_bytes(b"1")
    (src / os.fsdecode(b"bad\xff")).write_bytes(b"2")
    out = tmp_path / "c.consignment"
    with pytest.raises(SealError, match="refusing file name"):
        seal([src], out, sender=ALICE.sender, receivers=[BOB.recipient], escrow=ESCROW)
    assert not out.exists()


ACCEPTED = {
    "accents-nfc": ["caf\u00e9", "na\u00efve/r\u00e9sum\u00e9.txt"],
    "cjk-and-emoji": ["\u6587\u4ef6/\U0001f600.txt"],
    "zwj-emoji": ["\U0001f469\u200d\U0001f4bb"],
    "quote-and-colon": ['say "hi": now'],
    "same-directory-different-case": ["Docs/a", "docs/b"],
    "longest-component": [LONG_COMPONENT],
    "longest-name": ["/".join([LONG_COMPONENT] * 4)[: MAX_NAME - 1] + "z"],
}


@pytest.mark.parametrize("names", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_names_seal_and_open(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        assert check_file_name(name) == name
    check_entries([FileEntry(n, 1) for n in names])
    out = tmp_path / "c.consignment"
    deposit = seal(
        [Source(n, io.BytesIO(n.encode()), len(n.encode())) for n in names],
        out,
        sender=ALICE.sender,
        receivers=[BOB.recipient],
        escrow=ESCROW,
    )
    dest = tmp_path / "o"
    opened = unseal(
        out,
        dest,
        identity=BOB.encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )
    assert [f.name for f in opened.files] == names
    for name in names:
        assert (dest / name).read_bytes() == name.encode()


def test_the_longest_name_opens_below_a_long_destination(tmp_path: Path) -> None:
    """Every name the spec allows is written, however long the destination's own
    path: the reader works relative to the directories it opened, so the
    absolute path may exceed PATH_MAX."""
    name = "/".join([LONG_COMPONENT] * 4)[: MAX_NAME - 1] + "z"
    assert len(name.encode()) == MAX_NAME
    deep = tmp_path
    for _ in range(14):  # 14 * 256 bytes: with the name, past Linux's 4096
        deep = deep / ("p" * 255)
    deep.mkdir(parents=True)
    assert len(str(deep / name).encode()) > 4096
    _open([name], deep / "out")
    fd = os.open(str(tmp_path), os.O_RDONLY)
    try:
        rel = os.path.relpath(deep / "out" / name, tmp_path)
        parts = rel.split("/")
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with open(os.open(parts[-1], os.O_RDONLY, dir_fd=fd), "rb") as f:
            assert f.read() == b"x"
    finally:
        os.close(fd)


def test_limits_are_those_the_spec_names() -> None:
    assert (MAX_NAME, MAX_COMPONENT) == (1023, 255)

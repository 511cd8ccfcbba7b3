"""Opening writes all of a consignment or nothing of it, whatever happens to
the target directory meanwhile, and a failed open leaves the target as it was:
no staged file, no placeholder, no directory it made (not even the missing
parents of `new/deeper/out`)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from client.consignment import unseal
from client.errors import ClientError, OpenError, UnsafePathError
from client.format import place
from client.format.stream import SEGMENT
from tests.client.consign_helpers import ALICE, RECEIVERS, seal_bytes

BOB = RECEIVERS[0]
BIG = os.urandom(3 * SEGMENT)  # the progress callback runs between segments


def _open(
    sealed: bytes,
    deposit: object,
    dest: Path,
    *,
    during: Callable[[], None] | None = None,
    overwrite: bool = False,
) -> None:
    calls = []

    def progress(done: int, total: int) -> None:
        if not calls and during is not None:
            during()
        calls.append(done)

    unseal(
        io.BytesIO(sealed),
        dest,
        identity=BOB.encryption,
        release=deposit.release_for("bob"),  # type: ignore[attr-defined]
        sender_key=ALICE.signing.public_key(),
        overwrite=overwrite,
        progress=progress,
    )


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (None if p.is_dir() or p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def test_a_file_appearing_in_the_target_during_the_open_leaves_nothing_written(
    tmp_path: Path,
) -> None:
    sealed, deposit = seal_bytes({"a": b"one", "b": b"two", "sub/c": BIG}, [BOB])
    dest = tmp_path / "out"
    dest.mkdir()

    def intrude() -> None:
        (dest / "b").write_bytes(b"theirs")

    with pytest.raises(UnsafePathError, match="already exists"):
        _open(sealed, deposit, dest, during=intrude)
    assert _tree(dest) == {"b": b"theirs"}


def test_a_directory_replaced_by_a_link_during_the_open_is_not_followed(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"a": b"one", "sub/c": BIG}, [BOB])
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()

    def swap() -> None:
        (dest / "sub").symlink_to(outside)

    with pytest.raises(UnsafePathError, match="link or not a directory"):
        _open(sealed, deposit, dest, during=swap)
    assert list(outside.iterdir()) == []
    assert _tree(dest) == {"sub": None}


def test_a_link_inside_the_target_is_never_followed(tmp_path: Path) -> None:
    """Even one that points inside the target: below it, nothing is followed."""
    dest = tmp_path / "out"
    (dest / "real").mkdir(parents=True)
    (dest / "docs").symlink_to(dest / "real")
    sealed, deposit = seal_bytes({"docs/report.txt": b"x"}, [BOB])
    with pytest.raises(UnsafePathError):
        _open(sealed, deposit, dest)
    assert list((dest / "real").iterdir()) == []


def test_overwriting_is_undone_when_a_later_file_cannot_be_placed(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"a": b"new a", "b/x": b"new x", "c": BIG}, [BOB])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a").write_bytes(b"old a")

    def block() -> None:
        (dest / "c").mkdir()  # a directory is never overwritten

    with pytest.raises(UnsafePathError, match="already exists"):
        _open(sealed, deposit, dest, during=block, overwrite=True)
    assert _tree(dest) == {"a": b"old a", "c": None}


def test_a_failure_while_moving_puts_back_everything_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed, deposit = seal_bytes({"a": b"1", "d/b": b"2", "d/e/c": b"3"}, [BOB])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep").write_bytes(b"mine")
    real_rename = os.rename
    moves = []

    def flaky(src: str, dst: str, **kw: int) -> None:
        if src.isdigit():
            moves.append(src)
            if len(moves) == 3:
                raise OSError(28, "No space left on device")
        real_rename(src, dst, **kw)

    monkeypatch.setattr(place.os, "rename", flaky)
    with pytest.raises(ClientError, match="No space left") as info:
        _open(sealed, deposit, dest)
    assert not isinstance(info.value, OpenError)  # a local problem, said as such
    assert _tree(dest) == {"keep": b"mine"}


def test_a_failed_open_into_new_deeper_out_leaves_no_parents(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"a": b"1", "b": BIG}, [BOB])
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(OpenError):
        _open(damaged, deposit, tmp_path / "new" / "deeper" / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_placement_into_new_deeper_out_leaves_only_what_others_wrote(
    tmp_path: Path,
) -> None:
    sealed, deposit = seal_bytes({"a": b"1", "b": BIG}, [BOB])
    dest = tmp_path / "new" / "deeper" / "out"

    def intrude() -> None:
        (dest / "a").write_bytes(b"theirs")

    with pytest.raises(UnsafePathError):
        _open(sealed, deposit, dest, during=intrude)
    assert _tree(tmp_path) == {
        "new": None,
        "new/deeper": None,
        "new/deeper/out": None,
        "new/deeper/out/a": b"theirs",
    }


def test_a_target_that_is_a_file_is_a_local_error_and_changes_nothing(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"a": b"1"}, [BOB])
    (tmp_path / "out").write_bytes(b"a file")
    with pytest.raises(ClientError, match="cannot write into") as info:
        _open(sealed, deposit, tmp_path / "out")
    assert not isinstance(info.value, OpenError)
    assert _tree(tmp_path) == {"out": b"a file"}


def test_success_leaves_the_rest_of_the_target_alone(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"a": b"1", "d/b": b"2", "e": b""}, [BOB])
    dest = tmp_path / "out"
    (dest / "d").mkdir(parents=True)
    (dest / "d" / "other").write_bytes(b"mine")
    _open(sealed, deposit, dest)
    assert _tree(dest) == {
        "a": b"1",
        "d": None,
        "d/b": b"2",
        "d/other": b"mine",
        "e": b"",
    }

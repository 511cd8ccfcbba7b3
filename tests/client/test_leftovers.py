"""What a seal or an open killed mid-way leaves beside its output (a temporary
consignment file, a staging directory) is removed by the next seal or open in
that directory once its process is gone, and nothing else is: not another
host's, not a live process's, not a name of another form, not a link."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

from client.consignment import Source, seal, unseal
from client.format.leftovers import PREFIX, remove_dead, temporary_prefix
from tests.client.consign_helpers import ALICE, RECEIVERS, seal_bytes


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _leftovers(directory: Path) -> dict[str, Path]:
    """One of each kind, in `directory`: only "dead" and "dead dir" are removable."""
    host = temporary_prefix()[len(PREFIX) :].split(".")[0]
    dead = _dead_pid()
    made = {
        "dead": directory / f"{PREFIX}{host}.{dead}.abc123",
        "dead dir": directory / f"{PREFIX}{host}.{dead}.def456",
        "live": directory / f"{PREFIX}{host}.{os.getppid()}.abc123",
        "other host": directory / f"{PREFIX}elsewhere.{dead}.abc123",
        "other form": directory / f"{PREFIX}q1w2e3r4",
        "link": directory / f"{PREFIX}{host}.{dead}.link",
    }
    for kind, path in made.items():
        if kind == "dead dir":
            (path / "sub").mkdir(parents=True)
            (path / "sub" / "0").write_bytes(b"half a plaintext")
        elif kind == "link":
            path.symlink_to(made["live"])
        else:
            path.write_bytes(b"half a consignment")
    return made


def _left(made: dict[str, Path]) -> set[str]:
    return {kind for kind, path in made.items() if path.exists() or path.is_symlink()}


def test_a_seal_removes_what_a_killed_seal_left_and_nothing_else(tmp_path: Path) -> None:
    made = _leftovers(tmp_path)
    seal(
        [Source("a.txt", io.BytesIO(b"hello"), 5)],
        tmp_path / "out.consignment",
        sender=ALICE.sender,
        receivers=[RECEIVERS[0].recipient],
        escrow="acme",
    )
    assert (tmp_path / "out.consignment").is_file()
    assert _left(made) == {"live", "other host", "other form", "link"}
    assert (tmp_path / f"{PREFIX}q1w2e3r4").read_bytes() == b"half a consignment"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(temporary_prefix())]


def test_an_open_removes_what_a_killed_open_left_and_nothing_else(tmp_path: Path) -> None:
    bob = RECEIVERS[0]
    sealed, deposit = seal_bytes({"a.txt": b"hello"}, [bob])
    target = tmp_path / "out"
    target.mkdir()
    made = _leftovers(target)
    unseal(
        io.BytesIO(sealed),
        target,
        identity=bob.encryption,
        release=deposit.release_for(bob.name),
        sender_key=ALICE.signing.public_key(),
    )
    assert (target / "a.txt").read_bytes() == b"hello"
    assert _left(made) == {"live", "other host", "other form", "link"}
    assert not [p for p in target.iterdir() if p.name.startswith(temporary_prefix())]


def test_nothing_to_remove_in_a_directory_that_cannot_be_read(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    assert remove_dead(fd) == 0  # a closed descriptor: best effort, no error

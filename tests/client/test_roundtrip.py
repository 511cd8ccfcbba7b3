"""Round trips: what is sealed opens to the same bytes, names and modes, in both modes."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.deposit import Mode
from client.consignment import (
    Source,
    consignment_digest,
    inspect,
    seal,
    seal_async,
    unseal,
    unseal_async,
)
from client.format import manifest as _manifest
from client.format.header import CHUNK_SIZE, parse_header
from client.format.stream import SEGMENT
from tests.client.consign_helpers import ALICE, ESCROW, RECEIVERS, open_bytes, party, seal_bytes

ONE_FILE_OVERHEAD = len(_manifest.encode([_manifest.FileEntry("f", 0)]))


def _payload_sized(total: int) -> int:
    """File size that makes the whole plaintext payload exactly `total` bytes."""
    # The manifest spells the size in decimal, so solve for a fixed point.
    size = total - ONE_FILE_OVERHEAD
    for _ in range(3):
        size = total - len(_manifest.encode([_manifest.FileEntry("f", size)]))
    return size


BOUNDARY_SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(
    "payload_total",
    # ... and around one segment, where the payload stops running in the calling thread alone.
    [CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, SEGMENT, SEGMENT + 1],
)
def test_payload_chunk_boundaries_round_trip(mode: Mode, payload_total: int) -> None:
    data = os.urandom(_payload_sized(payload_total))
    sealed, deposit = seal_bytes({"f": data}, RECEIVERS[:1], mode)
    header = parse_header(io.BytesIO(sealed))
    assert header.payload_size == payload_total
    opened, _ = open_bytes(sealed, RECEIVERS[0], deposit)
    assert opened == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 3 * CHUNK_SIZE)),
    receivers=st.integers(1, 5),
    mode=st.sampled_from(list(Mode)),
    seed=st.binary(min_size=0, max_size=64),
)
def test_round_trip_any_size_any_receivers(
    size: int, receivers: int, mode: Mode, seed: bytes
) -> None:
    data = (seed or b"\x00") * (size // max(1, len(seed)) + 1)
    data = data[:size]
    chosen = RECEIVERS[:receivers]
    sealed, deposit = seal_bytes({"file.bin": data}, chosen, mode)
    for receiver in chosen:
        opened, result = open_bytes(sealed, receiver, deposit)
        assert opened == data
        assert result.consignment_id == deposit.consignment_id
    assert deposit.consignment_size == len(sealed)


@pytest.mark.parametrize("mode", list(Mode))
def test_many_files_with_names_sizes_and_modes(tmp_path: Path, mode: Mode) -> None:
    src = tmp_path / "reports"
    (src / "2026" / "q4").mkdir(parents=True)
    (src / "readme.txt").write_bytes(b"read me\n")
    (src / "2026" / "q4" / "big.bin").write_bytes(os.urandom(3 * CHUNK_SIZE + 7))
    (src / "2026" / "empty").write_bytes(b"")
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o750)
    loose = tmp_path / "loose.csv"
    loose.write_bytes(b"a,b\n1,2\n")
    out = tmp_path / "c.consignment"
    deposit = seal(
        [src, loose],
        out,
        sender=ALICE.sender,
        receivers=[RECEIVERS[0].recipient],
        escrow=ESCROW,
        mode=mode,
    )
    dest = tmp_path / "opened"
    opened = unseal(
        out,
        dest,
        identity=RECEIVERS[0].encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )
    names = sorted(e.name for e in opened.files)
    assert names == [
        "loose.csv",
        "reports/2026/empty",
        "reports/2026/q4/big.bin",
        "reports/readme.txt",
        "reports/run.sh",
    ]
    for name in names:
        original = loose if name == "loose.csv" else tmp_path / name
        assert (dest / name).read_bytes() == original.read_bytes()
    assert stat.S_IMODE((dest / "reports/run.sh").stat().st_mode) == 0o750
    assert not [p for p in dest.iterdir() if p.name.startswith(".consign-partial-")]


def test_virtual_safe_sender_is_its_only_receiver() -> None:
    me = party("alice")
    sealed, deposit = seal_bytes({"diary.txt": b"private"}, [me], Mode.SPLIT, sender=me)
    assert [r.name for r in deposit.policy.receivers] == [deposit.policy.sender] == ["alice"]
    opened, _ = open_bytes(sealed, me, deposit, sender=me)
    assert opened == b"private"


def test_header_reports_what_was_sealed_and_verifies_with_the_sender_key() -> None:
    sealed, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:3], Mode.SPLIT)
    info = inspect(io.BytesIO(sealed), sender_key=ALICE.signing.public_key())
    assert info.consignment_id == deposit.consignment_id
    assert info.escrow == ESCROW
    assert info.mode is Mode.SPLIT
    assert info.policy_digest == deposit.policy_digest
    assert info.signature_verified
    assert set(info.receiver_key_ids) == {r.key_id for r in deposit.policy.receivers}
    assert consignment_digest(io.BytesIO(sealed)) == deposit.consignment_digest


def test_escrowed_mode_consignment_carries_no_key_material() -> None:
    sealed, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:2], Mode.ESCROWED)
    header = parse_header(io.BytesIO(sealed))
    assert header.stanzas == ()
    assert deposit.escrow_key is None
    assert set(deposit.wrapped_keys) == {r.key_id.hex() for r in deposit.policy.receivers}
    for wrapped in deposit.wrapped_keys.values():
        assert wrapped not in sealed


def test_split_mode_deposit_key_is_not_in_the_consignment() -> None:
    sealed, deposit = seal_bytes({"f": b"x" * 100}, RECEIVERS[:2], Mode.SPLIT)
    assert deposit.escrow_key is not None
    assert deposit.escrow_key not in sealed


def test_open_into_a_stream_copies_only_after_every_check(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE)
    sealed, deposit = seal_bytes({"f": data}, RECEIVERS[:1])
    out = io.BytesIO()
    unseal(
        io.BytesIO(sealed),
        out,
        identity=RECEIVERS[0].encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )
    assert out.getvalue() == data


async def test_async_variants_do_not_block_the_event_loop(tmp_path: Path) -> None:
    data = os.urandom(16 * 1024 * 1024)
    (tmp_path / "big").write_bytes(data)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    deposit = await seal_async(
        [tmp_path / "big"],
        tmp_path / "c",
        sender=ALICE.sender,
        receivers=[RECEIVERS[0].recipient],
        escrow=ESCROW,
    )
    sealed_ticks = ticks
    await unseal_async(
        tmp_path / "c",
        tmp_path / "out",
        identity=RECEIVERS[0].encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )
    stop.set()
    await task
    assert sealed_ticks > 10
    assert ticks > sealed_ticks + 10
    assert (tmp_path / "out" / "big").read_bytes() == data


def test_progress_reports_every_byte() -> None:
    data = os.urandom(3 * CHUNK_SIZE * 16 + 5)
    seen: list[tuple[int, int]] = []
    out = io.BytesIO()
    seal(
        [Source("f", io.BytesIO(data), len(data))],
        out,
        sender=ALICE.sender,
        receivers=[RECEIVERS[0].recipient],
        escrow=ESCROW,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1][0] == seen[-1][1] > len(data)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_injected_randomness_and_clock_make_sealing_deterministic() -> None:
    """Escrowed mode puts no HPKE output in the file, so with the randomness and the
    clock injected the consignment bytes are exactly reproducible."""
    from broker.deposit import ControlAttributes
    from client.consignment import _seal_from_parts
    from client.format.manifest import FileEntry

    def sealed() -> tuple[bytes, int]:
        counter = iter(range(1000))
        out = io.BytesIO()
        deposit = _seal_from_parts(
            [(FileEntry("f", 5), lambda: io.BytesIO(b"hello"))],
            out,
            sender=ALICE.sender,
            receivers=[RECEIVERS[0].recipient],
            escrow=ESCROW,
            mode=Mode.ESCROWED,
            attributes=ControlAttributes(),
            rng=lambda n: bytes([next(counter)]) * n,
            now=lambda: 1_900_000_000.5,
        )
        return out.getvalue(), deposit.sealed_at

    first, second = sealed(), sealed()
    assert first == second
    assert first[1] == 1_900_000_000
    assert parse_header(io.BytesIO(first[0])).consignment_id == bytes(16)


MEMORY_PROBE = """
import io, resource, sys
from client.consignment import Source, seal
from tests.client.consign_helpers import ALICE, ESCROW, RECEIVERS

class Zeros(io.RawIOBase):
    def __init__(self, size): self.left = size
    def readable(self): return True
    def readinto(self, view):
        n = min(len(view), self.left)
        view[:n] = bytes(n)
        self.left -= n
        return n

class Sink(io.RawIOBase):
    def writable(self): return True
    def write(self, data): return len(data)

size = int(sys.argv[1])
seal([Source("zeros", Zeros(size), size)], Sink(), sender=ALICE.sender,
     receivers=[RECEIVERS[0].recipient], escrow=ESCROW)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_stays_bounded_whatever_the_size() -> None:
    """Peak RSS sealing 512 MiB is within a few MiB of sealing 1 MiB."""
    import subprocess
    import sys

    root = Path(__file__).parents[2]

    def peak_kib(size: int) -> int:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(size)],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        )
        return int(out.stdout.strip())

    small, large = peak_kib(1 << 20), peak_kib(512 << 20)
    assert large - small < 16 * 1024, (small, large)

"""Chunks written in place: where each chunk goes (`chunk_length`), the file
kept only when it adds up to the signed digest, and what `reclaim` removes."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from client.agent.chunks import MAX_CHUNK, Assembly, chunk_length, reclaim


@pytest.mark.parametrize(
    ("index", "count", "size", "length", "each"),
    [
        (0, 1, 10, 10, 10),  # one chunk: the whole
        (0, 3, 25, 10, 10),
        (2, 3, 25, 5, 10),  # the last tells the others' length
        (2, 3, 30, 10, 10),
        (0, 1, 0, 0, 0),  # an empty consignment is one empty chunk
    ],
)
def test_chunk_length_of_a_possible_cut(
    index: int, count: int, size: int, length: int, each: int
) -> None:
    assert chunk_length(index, count, size, length) == each


@pytest.mark.parametrize(
    ("index", "count", "size", "length"),
    [
        (3, 3, 30, 10),  # index out of range
        (0, 1, 10, 9),  # one chunk shorter than the whole
        (0, 3, 25, 5),  # two such chunks cannot reach 25
        (2, 3, 26, 5),  # 21 is not two equal chunks
        (2, 3, 25, 15),  # the last longer than the others
        (0, 2, 2 * MAX_CHUNK + 2, MAX_CHUNK + 1),  # over the protocol's limit
    ],
)
def test_chunk_length_refuses_an_impossible_cut(
    index: int, count: int, size: int, length: int
) -> None:
    assert chunk_length(index, count, size, length) is None


def test_chunks_in_any_order_make_the_signed_file(tmp_path: Path) -> None:
    data = os.urandom(25)
    assembly = Assembly(tmp_path / "received", "ab" * 16)
    assembly.write([(20, data[20:]), (0, data[:10])])
    assembly.write([(10, data[10:20])])
    assert assembly.assemble(25, blake3.blake3(data).hexdigest())
    assert assembly.final.read_bytes() == data
    assert not assembly.partial.exists()


def test_a_file_that_does_not_add_up_is_not_kept(tmp_path: Path) -> None:
    assembly = Assembly(tmp_path / "received", "cd" * 16)
    assembly.write([(0, b"x" * 10)])
    assert not assembly.assemble(10, blake3.blake3(b"y" * 10).hexdigest())
    assert not assembly.final.exists()
    assert not assembly.partial.exists()


def test_reclaim_removes_leftovers_but_not_what_is_arriving(tmp_path: Path) -> None:
    received = tmp_path / "received"
    received.mkdir()
    arriving, stale = "ab" * 16, "cd" * 16
    (received / f".{arriving}.partial").write_bytes(b"1234")
    (received / f".{stale}.partial").write_bytes(b"12345")
    (received / f".{stale}.parts").mkdir()
    (received / f".{stale}.parts" / "0").write_bytes(b"123")
    done = received / f"{'ef' * 16}.consignment"
    done.write_bytes(b"12")
    outside = tmp_path / "elsewhere.consignment"
    outside.write_bytes(b"1")
    sizes = reclaim(received, [done, outside], {arriving})
    assert sorted(sizes) == [2, 3, 5]
    assert (received / f".{arriving}.partial").exists()
    assert outside.exists()  # never outside the directory given
    assert sorted(p.name for p in received.iterdir()) == [f".{arriving}.partial"]

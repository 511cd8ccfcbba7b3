"""Bad input at scale, short version (`bench/reliability.py bad-input` runs
10,000 and more): a seeded campaign of malformed, truncated, mis-signed,
replayed, wrongly addressed and oversize requests against a running worker on
RabbitMQ, valid key requests interleaved, on both store backends; and, with
Hypothesis, arbitrary bytes and mutations of a signed request straight into the
service: it never raises, dead-letters what does not parse, and keeps nothing.
"""

from __future__ import annotations

import asyncio
import collections
import io
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from broker import SignedEnvelope, Transport
from broker.deposit import Deposit
from client.consignment import unseal
from client.errors import OpenError
from client.format.header import CHUNK_SIZE
from escrow_worker.state.location import Location
from tests.client.consign_helpers import ALICE, RECEIVERS, seal_bytes
from tests.escrow_worker.helpers import full_snapshot, make_escrow, request
from tests.reliability.campaign import run_campaign, summary
from tests.reliability.hostile import KINDS, parses
from tests.support import TransportFactory

#: Recorded: the same seed makes the same messages.
SEED = 1515
COUNT = 160
BOB = RECEIVERS[0]


@pytest.mark.rabbitmq
async def test_a_bad_input_campaign_never_stops_valid_traffic_and_keeps_nothing(
    escrow_location: Location, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    setup = await make_escrow(escrow_location)

    async def transport(**config: object) -> Transport:
        return await amqp_factory(**config)

    report = await run_campaign(setup, transport, amqp_url, count=COUNT, seed=SEED)
    assert set(report.by_kind) == set(KINDS)  # every kind tried
    assert report.failures() == [], summary(report)
    assert report.dead_letters > 0


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Bit flips, byte changes, truncation, insertion and extension of `valid`."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            how = draw(st.sampled_from(["flip", "set", "cut", "insert", "extend", "swap"]))
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            if how == "flip" and data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif how == "set" and data:
                data[at] = draw(st.integers(0, 255))
            elif how == "cut":
                del data[at:]
            elif how == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            elif how == "extend":
                data += draw(st.binary(min_size=1, max_size=CHUNK_SIZE + 64))
            elif how == "swap" and len(data) > 2 * CHUNK_SIZE:
                a = draw(st.integers(0, len(data) - CHUNK_SIZE))
                b = draw(st.integers(0, len(data) - CHUNK_SIZE))
                data[a : a + CHUNK_SIZE], data[b : b + CHUNK_SIZE] = (
                    data[b : b + CHUNK_SIZE],
                    data[a : a + CHUNK_SIZE],
                )
        return bytes(data)

    return mutate()


def _rewrapped(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid`'s payload or signature changed, and wrapped again in a well-formed
    envelope: what a forger in flight sends."""
    signed = SignedEnvelope.from_wire(valid)

    @st.composite
    def rewrap(draw: st.DrawFn) -> bytes:
        payload, signature = bytearray(signed.payload), bytearray(signed.signature)
        part = draw(st.sampled_from([payload, signature]))
        at = draw(st.integers(0, len(part) - 1))
        part[at] ^= draw(st.integers(1, 255))
        return SignedEnvelope(payload=bytes(payload), signature=bytes(signature)).to_wire()

    return rewrap()


def test_arbitrary_bytes_and_mutated_requests_never_raise_and_keep_nothing(
    tmp_path: Path,
) -> None:
    """Straight into the service (no broker): whatever the bytes, `handle`
    returns; what does not parse is dead-lettered; a mutated signed request that
    still parses is refused as unauthenticated; the store never changes."""
    with asyncio.Runner() as runner:
        setup = runner.run(make_escrow(tmp_path / "escrow"))
        service = runner.run(setup.open_service())
        try:
            valid = request(setup["mallory"], "lookup", {"name": "bob"})
            before = runner.run(full_snapshot(setup))
            seen: collections.Counter[str] = collections.Counter()

            @settings(max_examples=250, deadline=None, derandomize=True, database=None)
            @given(st.one_of(st.binary(max_size=4096), _mutations(valid), _rewrapped(valid)))
            def handled(data: bytes) -> None:
                assume(data != valid)
                outcome = runner.run(service.handle(data))
                if not parses(data):
                    assert outcome.dead_letter
                    assert outcome.reply is None
                else:
                    assert outcome.decision.startswith("unauthenticated"), outcome.decision
                    assert not outcome.stored
                    assert not outcome.events
                seen[outcome.decision.split(":")[0]] += 1

            handled()
            assert seen["dead-letter"] > 0
            assert seen["unauthenticated"] > 0
            assert runner.run(full_snapshot(setup)) == before
        finally:
            runner.run(service.close())


def _open(data: bytes, deposit: Deposit, target: Path) -> None:
    unseal(
        io.BytesIO(data),
        target,
        identity=BOB.encryption,
        release=deposit.release_for(BOB.name),
        sender_key=ALICE.signing.public_key(),
    )


def test_corrupted_consignments_never_open_and_never_leave_output(tmp_path: Path) -> None:
    """Every corruption of a sealed consignment (three chunks and more) is the
    one OpenError, with the same words whatever failed, and the target
    directory stays empty: no partial output, no staging left behind."""
    files = {"a.txt": os.urandom(CHUNK_SIZE * 2 + 123), "b/c.bin": os.urandom(5000)}
    sealed, deposit = seal_bytes(files, [BOB])
    target = tmp_path / "out"
    target.mkdir()
    _open(sealed, deposit, target)  # the intact one opens ...
    assert sorted(p.name for p in target.rglob("*") if p.is_file()) == ["a.txt", "c.bin"]
    shutil.rmtree(target)
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(_mutations(sealed))
    def refused(data: bytes) -> None:
        assume(data != sealed)
        target.mkdir()
        try:
            with pytest.raises(OpenError) as caught:
                _open(data, deposit, target)
            assert str(caught.value) == OpenError.MESSAGE
            assert list(target.iterdir()) == []
            assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging beside it
            outcomes[type(caught.value).__name__] += 1
        finally:
            shutil.rmtree(target)

    refused()
    assert outcomes == {"OpenError": sum(outcomes.values())}

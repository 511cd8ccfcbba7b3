"""kill -9 of a sender or receiver agent (`consign` processes) in the middle of
a batch, a send and an open, against an escrow worker process on RabbitMQ;
then the same command again: every deposit the escrow confirmed is kept and
reaches bob, none is made twice, no key part is released twice, no
consignment is opened twice, and no output file is ever half-written
(`tests/reliability/agents.py` says how the kills land and what is counted;
`bench/reliability.py agent-kill` runs the long version)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from escrow_worker.state.location import Location
from tests.reliability.agents import Tally, agent_world, batch_round, single_round

pytestmark = pytest.mark.rabbitmq


async def test_a_batch_killed_mid_deposit_and_mid_open_resumes_once(
    tmp_path: Path, escrow_location: Location, amqp_url: str
) -> None:
    """Both stores: the escrow's records are what keep the run again from
    depositing or releasing twice."""
    tally = Tally()
    async with agent_world(tmp_path, escrow_location, amqp_url) as world:
        await batch_round(
            world, tally, "b", random.Random(15), seal_kill="deposited", open_kill="released"
        )
    assert tally.notes == []
    assert (tally.kills, tally.finished_first) == (2, 0), "a kill landed after the command ended"


async def test_a_send_and_an_open_killed_midway_finish_when_run_again(
    tmp_path: Path, amqp_url: str
) -> None:
    """The send killed with some chunks in bob's inbox; the open killed after
    the escrow released the key part, while it decrypts. (The escrow's state
    takes no part beyond the one release: SQLite only.)"""
    tally = Tally()
    location = Location(directory=tmp_path / "escrow")
    async with agent_world(tmp_path, location, amqp_url) as world:
        await single_round(world, tally, "s", random.Random(15))
    assert tally.notes == []
    assert (tally.kills, tally.finished_first) == (2, 0), "a kill landed after the command ended"

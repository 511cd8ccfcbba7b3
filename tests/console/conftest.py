"""The console tests' fixtures: a `Desk` on each store backend, and a console
served for real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from escrow_worker.state.location import Location
from tests.console.helpers import Desk, desk
from tests.console.live import Live, live_console


@pytest.fixture
async def console_desk(escrow_location: Location) -> AsyncIterator[Desk]:
    async with desk(escrow_location) as d:
        yield d


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """`consign escrow console` running, shared by the modules here (starting it
    costs seconds). Tests on it must leave olga an operator, except the very
    last, in test_console_tls.py, which revokes her."""
    with live_console(tmp_path_factory.mktemp("live")) as running:
        yield running

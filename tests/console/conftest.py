"""The console tests' fixture: a `Desk` on each store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from escrow_worker.state.location import Location
from tests.console.helpers import Desk, desk


@pytest.fixture
async def console_desk(escrow_location: Location) -> AsyncIterator[Desk]:
    async with desk(escrow_location) as d:
        yield d

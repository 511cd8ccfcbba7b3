"""Shared fixtures: RabbitMQ, PostgreSQL, one transport suite run against both
transports, and the escrow's store on both backends.

`transport_factory` (and `transport`, built from it) is parametrised like
aio-pika's `connection_fabric`: every test that uses it runs once on the
in-process transport and once on RabbitMQ. Each test gets a unique queue prefix,
and on RabbitMQ its queues and exchanges are deleted afterwards. Tests never stop,
restart or reconfigure the shared broker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from yarl import URL

from broker import Transport
from escrow_worker.state.location import Location
from tests.support import DEFAULT_AMQP_URL, DEFAULT_PG_URL, TransportFactory, temporary_database

pytest.register_assert_rewrite(
    "tests.broker.transport_helpers", "tests.cli_helpers", "tests.escrow_worker.helpers"
)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of the test RabbitMQ; fails under CI=true when it does not answer."""
    url = os.environ.get("CONSIGN_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    parsed = URL(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5672
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        reason = f"RabbitMQ does not answer at {host}:{port} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true needs it", pytrace=False)
        pytest.skip(f"{reason}; outside CI (with CI=true this is a failure)")
    return url


@pytest.fixture(
    params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)],
)
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[TransportFactory]:
    """Makes transports of each kind in turn: the suite runs on both."""
    url = request.getfixturevalue("amqp_url") if request.param == "amqp" else None
    factory = TransportFactory(request.param, url)
    try:
        yield factory
    finally:
        await factory.cleanup()


@pytest.fixture
async def amqp_factory(amqp_url: str) -> AsyncIterator[TransportFactory]:
    """Makes AMQP transports only, for RabbitMQ-specific tests."""
    factory = TransportFactory("amqp", amqp_url)
    try:
        yield factory
    finally:
        await factory.cleanup()


@pytest.fixture
async def transport(transport_factory: TransportFactory) -> Transport:
    """A started transport with the test defaults, closed after the test."""
    return await transport_factory()


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the test PostgreSQL server (a database to connect to while creating
    others); fails under CI=true when it does not answer."""
    url = os.environ.get("CONSIGN_TEST_PG_URL", DEFAULT_PG_URL)
    parsed = URL(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        reason = f"PostgreSQL does not answer at {host}:{port} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true needs it", pytrace=False)
        pytest.skip(f"{reason}; outside CI (with CI=true this is a failure)")
    return url


@pytest.fixture
async def pg_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test (dropped afterwards)."""
    async with temporary_database(pg_admin_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def escrow_location(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Location]:
    """Where a test's escrow lives, once per store backend: SQLite in a directory
    of the test's own, or a PostgreSQL database of its own (no directory)."""
    if request.param == "sqlite":
        yield Location(directory=tmp_path / "escrow")
        return
    async with temporary_database(request.getfixturevalue("pg_admin_url")) as url:
        yield Location(database=url)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print the random order's seed at the end too (the header that pytest-randomly
    writes it in is hidden by -q), so a failure that depends on order replays."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(
            f"tests ran in random order: --randomly-seed={seed} repeats it "
            "(-p no:randomly runs them in file order)"
        )

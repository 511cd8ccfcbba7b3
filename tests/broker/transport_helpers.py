"""Helpers for the transport tests."""

from __future__ import annotations

import asyncio

import pytest

from broker import Deliveries, Delivery, Message, Transport

WAIT = 5.0  # seconds to wait for something that must arrive
QUIET = 0.3  # seconds to watch for something that must not arrive


def message(n: int | str = 0, *, body: bytes | None = None, **fields: object) -> Message:
    return Message(
        body=f"body {n}".encode() if body is None else body,
        message_id=f"msg-{n}",
        type="test.v1",
        **fields,  # type: ignore[arg-type]
    )


async def receive(deliveries: Deliveries) -> Delivery:
    async with asyncio.timeout(WAIT):
        return await anext(deliveries)


async def assert_nothing_arrives(deliveries: Deliveries) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET):
            await anext(deliveries)


async def assert_empty(transport: Transport, queue: str) -> None:
    left = await transport.get(queue, timeout=QUIET)
    assert left is None, f"{queue} still holds {left!r}"

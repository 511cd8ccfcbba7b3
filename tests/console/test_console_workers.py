"""Workers' heartbeats on the overview, on both stores: a worker writes its row
when it starts, at each sweep (with the requests it handled) and when it
stops; the overview calls it alive, stale (not seen for `ALIVE_SECONDS`) or
stopped, and forgets rows not seen for a day; a heartbeat prunes week-old rows."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from escrow_worker import EscrowWorker
from escrow_worker.console.views import ALIVE_SECONDS
from escrow_worker.state import heartbeats
from escrow_worker.state.base import Tx
from tests.console.helpers import Desk, bearer
from tests.escrow_worker.helpers import (
    Agent,
    deposit_body,
    eventually,
    key_request_body,
    request,
    seal_for,
)
from tests.support import TransportFactory


async def _workers(d: Desk, token: str) -> list[dict[str, Any]]:
    r = await d.client.get("/api/overview", headers=bearer(token))
    assert r.status_code == 200, r.text
    workers = r.json()["workers"]
    assert isinstance(workers, list)
    return workers


async def test_a_worker_beats_while_it_serves_and_says_when_it_stops(console_desk: Desk) -> None:
    d = console_desk
    token = await d.login()
    assert await _workers(d, token) == []
    factory = TransportFactory("memory", None)
    worker = EscrowWorker(d.direct.service, await factory(), sweep_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def seen() -> list[tuple[str, int, str]]:
            return [(w["worker_id"], w["handled"], w["state"]) for w in await _workers(d, token)]

        await eventually(seen, [(worker.worker_id, 0, "alive")])
        alice = await Agent(d.setup, d.setup["alice"], await factory()).start()
        bob = await Agent(d.setup, d.setup["bob"], await factory()).start()
        _, deposit = seal_for(d.setup["alice"], [d.setup["bob"]])
        now, body = d.setup.clock.now, deposit_body(d.setup, deposit)
        await alice.ask(request(d.setup["alice"], "deposit", body, now=now))
        await bob.ask(request(d.setup["bob"], "key-request", key_request_body(deposit), now=now))
        # The sweep's heartbeat counts them.
        await eventually(seen, [(worker.worker_id, 2, "alive")])
    finally:
        stop.set()
        await task
        await factory.cleanup()
    (row,) = await _workers(d, token)
    assert (row["host"], row["pid"], row["handled"]) == (socket.gethostname(), os.getpid(), 2)
    assert (row["state"], row["stopped_at"]) == ("stopped", row["last_seen"])
    await d.browser_login()
    page = (await d.client.get("/")).text
    assert f'id="worker-{worker.worker_id}"' in page
    assert "stopped at" in page


async def test_a_silent_worker_is_stale_and_old_rows_go(console_desk: Desk) -> None:
    d = console_desk
    t = d.setup.clock.t

    def beat(worker_id: str, seen: int, started: int | None = None) -> Any:
        row = heartbeats.Heartbeat(worker_id, "h1", 7, started or seen, seen, 3)

        async def job(tx: Tx) -> None:
            await heartbeats.beat(tx, row)

        return d.setup.run(job)

    await beat("ancient", t - heartbeats.KEEP_SECONDS - 600)
    await beat("yesterday", t - 2 * 86400)  # kept, but not on the overview
    await beat("quiet", t - ALIVE_SECONDS - 1)
    await beat("busy", t - ALIVE_SECONDS, started=t - 3600)
    kept = await d.setup.run(
        lambda tx: tx.fetchall("SELECT worker_id FROM worker_heartbeats ORDER BY worker_id")
    )
    assert [r[0] for r in kept] == ["busy", "quiet", "yesterday"]
    token = await d.login()
    workers = await _workers(d, token)
    assert [(w["worker_id"], w["state"], w["handled"]) for w in workers] == [
        ("busy", "alive", 3),
        ("quiet", "stale", 3),
    ]
    d.setup.clock.advance(1)
    assert [w["state"] for w in await _workers(d, await d.login())] == ["stale", "stale"]

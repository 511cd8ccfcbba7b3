"""A bad-input campaign against a running escrow worker over RabbitMQ, with
valid traffic interleaved, and the counts its pass criteria are checked on
(tests/reliability/test_bad_input.py runs a short one, `bench/reliability.py
bad-input` the long one).

The worker must: never crash or stall valid traffic (every valid key request
answered with a release), store nothing for an unauthenticated message, send
carol exactly the one typed error each of her bad requests calls for, send a
replay the stored reply again, dead-letter exactly what does not parse, and
send nothing anywhere about a stranger's request.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broker import ESCROW, Message, Transport
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    deposit_body,
    key_request_body,
    request,
    request_id_of,
    running_worker,
    seal_for,
    verify,
)
from tests.reliability.helpers import escrow_counts, queue_depth
from tests.reliability.hostile import Hostile, HostileMaker, campaign

__all__ = ["Report", "run_campaign"]

NAMES = ("alice", "bob", "carol", "mallory")


@dataclass
class Report:
    seed: int
    hostile: list[Hostile]
    valid: list[str]
    #: Per inbox, every reply as (in_reply_to, type, error code or None, raw).
    replies: dict[str, list[tuple[str | None, str, str | None, bytes]]]
    dead_letters: int
    before: dict[str, int]
    after: dict[str, int]
    elapsed: float
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)

    def failures(self) -> list[str]:
        """Every pass criterion that does not hold, in words (empty: all hold)."""
        bad: list[str] = []
        by_id: dict[str, list[tuple[str, str | None, bytes]]] = collections.defaultdict(list)
        for name, replies in self.replies.items():
            for rid, type_, code, raw in replies:
                by_id[f"{name}/{rid}"].append((type_, code, raw))
        for rid in self.valid:
            got = by_id.get(f"bob/{rid}", [])
            if (
                not got
                or {t for t, _, _ in got} != {"key-release"}
                or len({r for *_, r in got}) != 1
            ):
                bad.append(f"valid key request {rid} answered {[(t, c) for t, c, _ in got]}")
        strict = [
            h
            for h in self.hostile
            if h.code is not None and h.kind != "request id reused for other bytes"
        ]
        for h in strict:
            got = by_id.get(f"carol/{h.request_id}", [])
            if [(t, c) for t, c, _ in got] != [("error", h.code)]:
                bad.append(f"{h.kind} {h.request_id}: carol got {[(t, c) for t, c, _ in got]}")
        replays = [h for h in self.hostile if h.replay]
        reused = [h for h in self.hostile if h.kind == "request id reused for other bytes"]
        if replays or reused:
            base = (replays or reused)[0].request_id
            got = by_id.get(f"carol/{base}", [])
            stored = {raw for t, _, raw in got if t == "lookup-reply"}
            refused = [c for t, c, _ in got if t == "error"]
            if replays and (
                len(stored) != 1 or sum(t == "lookup-reply" for t, _, _ in got) < len(replays)
            ):
                bad.append(f"replays of {base} got {len(stored)} different stored replies")
            if refused != ["replayed"] * len(reused):
                bad.append(f"reused request id {base}: errors {refused}, {len(reused)} expected")
        loose = {h.request_id for h in self.hostile if h.loose}
        for rid, type_, code, _ in self.replies.get("mallory", []):
            if type_ != "error" or code != "unauthenticated" or rid not in loose:
                bad.append(f"mallory got {type_} {code} for {rid}")
        strangers = {h.request_id for h in self.hostile if h.kind == "signed by another CA"}
        for name, replies in self.replies.items():
            if any(rid in strangers for rid, *_ in replies):
                bad.append(f"{name} was sent something about a stranger's request")
        alice = collections.Counter(t for _, t, _, _ in self.replies.get("alice", []))
        if set(alice) - {"event", "deposit-receipt"} or alice["deposit-receipt"] != 1:
            bad.append(f"alice got {dict(alice)}: replies it never asked for")
        dead = sum(h.dead for h in self.hostile)
        if self.dead_letters != dead:
            bad.append(f"{self.dead_letters} dead letters, {dead} expected")
        grown = {k: self.after[k] - self.before[k] for k in ("requests", "releases", "deposits")}
        want = {"requests": len(self.valid), "releases": len(self.valid), "deposits": 0}
        if grown != want:
            bad.append(f"the store grew by {grown}, not {want}: something unauthenticated was kept")
        return bad


class _Inboxes:
    """Consumes every agent's inbox, verifies what comes, keeps it by inbox."""

    def __init__(self, setup: EscrowSetup, transport: Transport) -> None:
        self.setup = setup
        self.transport = transport
        self.replies: dict[str, list[tuple[str | None, str, str | None, bytes]]] = (
            collections.defaultdict(list)
        )
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name in NAMES:
            queue = await self.transport.declare_inbox(name)
            self._tasks.append(asyncio.create_task(self._consume(name, queue)))

    async def _consume(self, name: str, queue: str) -> None:
        async with self.transport.consume(queue, prefetch=64) as deliveries:
            async for delivery in deliveries:
                received = verify(self.setup, delivery.body)
                await delivery.ack()
                rid = getattr(received.body, "in_reply_to", None)
                self.replies[name].append((rid, received.type, received.code, received.raw))
                self.changed.set()

    async def quiet(self, seconds: float, until: Callable[[], bool], wait: float) -> None:
        """Until `until()` holds and nothing came for `seconds`."""
        async with asyncio.timeout(wait):
            while True:
                self.changed.clear()
                try:
                    async with asyncio.timeout(seconds):
                        await self.changed.wait()
                except TimeoutError:
                    if until():
                        return

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def run_campaign(
    setup: EscrowSetup,
    transport: Callable[..., Awaitable[Transport]],
    amqp_url: str,
    *,
    count: int,
    seed: int,
    valid_every: int = 10,
    wait: float = 120.0,
) -> Report:
    """`count` hostile requests from `seed`, a valid key request by bob after
    every `valid_every` of them, through one worker; then the counts.
    `transport(**config)` makes a started transport on the campaign's prefix."""
    rnd = random.Random(seed)
    loop = asyncio.get_running_loop()
    inboxes = _Inboxes(setup, await transport())
    publisher = await transport(max_message_size=2 << 20)  # lets oversize ones through
    service = await setup.open_service()
    async with service, running_worker(service, await transport()):
        await inboxes.start()
        alice = Agent(setup, setup["alice"], publisher)
        _, deposit = seal_for(setup["alice"], [setup["bob"]])
        now = setup.clock.now
        await alice.send(request(setup["alice"], "deposit", deposit_body(setup, deposit), now=now))
        answered = request(setup["carol"], "lookup", {"name": "bob"}, now=now)
        await alice.send(answered)
        base = request_id_of(answered)
        await inboxes.quiet(0.2, lambda: any(r[0] == base for r in inboxes.replies["carol"]), wait)
        before = await escrow_counts(setup)
        hostile = campaign(HostileMaker(setup, rnd, now, answered), count)
        valid: list[str] = []
        started = loop.time()
        for i, h in enumerate(hostile):
            message_id = h.request_id or f"unparseable-{i}"
            await publisher.publish(
                ESCROW, Message(body=h.data, message_id=message_id, type="request.v1")
            )
            if i % valid_every == valid_every - 1 or i == len(hostile) - 1:
                data = request(setup["bob"], "key-request", key_request_body(deposit), now=now)
                await alice.send(data)  # publishes; the reply goes to bob
                valid.append(request_id_of(data))
        expected_carol = sum(h.code is not None or h.replay for h in hostile)

        def done() -> bool:
            bob = {r[0] for r in inboxes.replies["bob"]}
            return set(valid) <= bob and len(inboxes.replies["carol"]) >= expected_carol + 1

        await inboxes.quiet(1.0, done, wait)
        elapsed = loop.time() - started
    await inboxes.close()
    after = await escrow_counts(setup)
    dead = await queue_depth(amqp_url, publisher.config.dead_letter_queue)
    report = Report(
        seed=seed,
        hostile=hostile,
        valid=valid,
        replies=dict(inboxes.replies),
        dead_letters=dead,
        before=before,
        after=after,
        elapsed=elapsed,
    )
    report.by_kind.update(h.kind for h in hostile)
    return report


def summary(report: Report) -> dict[str, Any]:
    return {
        "seed": report.seed,
        "hostile": len(report.hostile),
        "valid": len(report.valid),
        "dead_letters": report.dead_letters,
        "elapsed_s": round(report.elapsed, 1),
        "failures": report.failures(),
    }

"""A clock that jumps on a worker, forward and back, on both store backends:
every decision is taken on the escrow's clock at the moment it decides (never on
the `issued_at` a request claims), freshness allows exactly the documented skew
(`DEFAULT_MAX_SKEW`, 2 minutes, either way), and a request answered before a jump
gets its stored reply again after it, whatever the clock says, never a second
decision. docs/reliability.md, "Clocks".
"""

from __future__ import annotations

from datetime import timedelta

from broker import ControlAttributes, InProcessBroker, InProcessTransport, TransportConfig
from escrow_worker.handlers.auth import DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SKEW
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    Agent,
    deposit_body,
    key_request_body,
    make_escrow,
    releases,
    request,
    running_worker,
    seal_for,
)


async def test_decisions_follow_the_escrows_clock_through_jumps(
    escrow_location: Location,
) -> None:
    setup = await make_escrow(escrow_location)
    clock, t0 = setup.clock, setup.clock.now
    attributes = ControlAttributes(not_before=clock.t + 60, not_after=clock.t + 600)
    _, deposit = seal_for(setup["alice"], [setup["bob"]], attributes=attributes)
    broker, config = InProcessBroker(), TransportConfig(prefix="clock")

    async def transport() -> InProcessTransport:
        made = InProcessTransport(config, broker=broker)
        await made.start()
        return made

    async with await setup.open_service() as service, running_worker(service, await transport()):
        alice = await Agent(setup, setup["alice"], await transport()).start()
        bob = await Agent(setup, setup["bob"], await transport()).start()
        receipt = await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
        assert receipt.type == "deposit-receipt"

        def ask(at: timedelta) -> bytes:
            return request(setup["bob"], "key-request", key_request_body(deposit), now=t0 + at)

        # Before not_before on the escrow's clock: not yet.
        early = await bob.ask(ask(timedelta(0)))
        assert early.code == "not_yet"
        # The clock jumps 2 minutes on: a request issued at t0 (before not_before)
        # is released, because the escrow decides on its own time, t0 + 120.
        clock.advance(120)
        issued_before = ask(timedelta(0))
        released = await bob.ask(issued_before)
        assert released.type == "key-release"
        # The clock jumps back to t0 + 30: not yet again, on the escrow's clock ...
        clock.now = t0 + timedelta(seconds=30)
        assert (await bob.ask(ask(timedelta(seconds=30)))).code == "not_yet"
        # ... but the request it answered keeps its answer, byte for byte.
        again = await bob.ask(issued_before)
        assert again.raw == released.raw
        # Past not_after on the escrow's clock: expired (a decision, not staleness).
        clock.now = t0 + timedelta(seconds=601)
        assert (await bob.ask(ask(timedelta(seconds=601)))).code == "expired"
        # Skew: issued up to DEFAULT_MAX_SKEW ahead of the escrow's clock is fresh;
        # one second more is stale (from the future).
        skew = DEFAULT_MAX_SKEW
        fresh = await bob.ask(ask(timedelta(seconds=601) + skew))
        assert fresh.code == "expired"  # decided: past not_after
        ahead = await bob.ask(ask(timedelta(seconds=601) + skew + timedelta(seconds=1)))
        assert (ahead.code, ahead.body.detail) == ("stale", "from_future")
        # And expired envelopes: good until expires_at + skew on the escrow's clock.
        lifetime = timedelta(minutes=5)
        late = timedelta(seconds=601) - lifetime - skew
        assert (await bob.ask(ask(late))).code == "expired"  # still fresh: decided
        stale = await bob.ask(ask(late - timedelta(seconds=1)))
        assert (stale.code, stale.body.detail) == ("stale", "expired")
        # The replay of the released request after all of it: the same bytes.
        assert (await bob.ask(issued_before)).raw == released.raw
    assert await releases(setup) == (1, 1)
    assert timedelta(minutes=15) == DEFAULT_MAX_LIFETIME  # docs/reliability.md says so

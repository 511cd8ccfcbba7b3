"""Hypothesis properties of the time-window decision (`handlers.decide.check_window`
and `window_closes`): for any attributes, clock and history, a key is released
exactly when the rule in the module's docstring says, refused with the first
failing condition's code otherwise, and `window_closes` is the last second of
release. The hand-picked boundaries are in tests/escrow_worker/test_decide.py."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from broker import ControlAttributes
from broker.messages import ErrorCode
from escrow_worker.handlers.decide import check_window, window_closes
from escrow_worker.state.records import ReceiverRecord

T = 1_900_000_000
times = st.integers(T - 1000, T + 1000)
maybe_time = st.none() | times


@st.composite
def attributes(draw: st.DrawFn) -> ControlAttributes:
    not_before, not_after = draw(maybe_time), draw(maybe_time)
    if not_before is not None and not_after is not None:  # not_after is strictly later
        lo, hi = sorted((not_before, not_after))
        not_before, not_after = lo, hi + (lo == hi)
    return ControlAttributes(
        not_before=not_before,
        not_after=not_after,
        ask_within_seconds=draw(st.none() | st.integers(1, 1000)),
        max_releases=draw(st.none() | st.integers(1, 5)),
    )


records = st.builds(
    ReceiverRecord, name=st.just("bob"), notified_at=maybe_time, releases=st.integers(0, 6)
)


def rule(a: ControlAttributes, r: ReceiverRecord, now: int) -> ErrorCode | None:
    """The documented rule, written out independently of the implementation."""
    if a.not_before is not None and now < a.not_before:
        return ErrorCode.NOT_YET
    if a.not_after is not None and now > a.not_after:
        return ErrorCode.EXPIRED
    if a.ask_within_seconds is not None and (
        r.notified_at is None or now > r.notified_at + a.ask_within_seconds
    ):
        return ErrorCode.ASK_WINDOW_CLOSED
    if a.max_releases is not None and r.releases >= a.max_releases:
        return ErrorCode.EXHAUSTED
    return None


@given(attributes(), records, times)
def test_check_window_follows_the_rule(a: ControlAttributes, r: ReceiverRecord, now: int) -> None:
    refusal = check_window(a, r, now=now)
    assert (None if refusal is None else refusal.code) == rule(a, r, now)
    if refusal is not None:
        assert refusal.message


@given(attributes(), times)
def test_window_closes_is_the_last_second_of_release(a: ControlAttributes, notified: int) -> None:
    record = ReceiverRecord("bob", notified_at=notified)
    closes = window_closes(a, notified_at=notified)
    if closes is None:
        assert a.not_after is None
        assert a.ask_within_seconds is None
        return
    assume(a.not_before is None or a.not_before <= closes)
    assume(a.max_releases is None)
    assert check_window(a, record, now=closes) is None
    late = check_window(a, record, now=closes + 1)
    assert late is not None
    assert late.code in {ErrorCode.EXPIRED, ErrorCode.ASK_WINDOW_CLOSED}


@given(attributes(), records, times, st.integers(1, 500))
def test_time_only_closes_a_window_once_opened(
    a: ControlAttributes, r: ReceiverRecord, now: int, later: int
) -> None:
    """Refused as not yet, then (maybe) released, then refused for good: once a
    later second is refused for time, no still later one is released."""
    first = check_window(a, r, now=now)
    second = check_window(a, r, now=now + later)
    if first is not None and first.code in {ErrorCode.EXPIRED, ErrorCode.ASK_WINDOW_CLOSED}:
        assert second is not None
        assert second.code in {ErrorCode.EXPIRED, ErrorCode.ASK_WINDOW_CLOSED}

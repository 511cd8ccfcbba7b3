"""The request freshness check (`handlers.auth.check_times`) alone: every
boundary to the second, and a Hypothesis property that it accepts exactly the
requests the documented rule accepts. No database, no broker: the full request
path with a store is tests/escrow_worker/test_requests.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import new_envelope
from broker.envelope import Envelope
from escrow_worker.errors import RequestReason, RequestRejected
from escrow_worker.handlers.auth import DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SKEW, check_times

T = 1_900_000_000
NOW = datetime.fromtimestamp(T, UTC)
SKEW = int(DEFAULT_MAX_SKEW.total_seconds())
LIFETIME = int(DEFAULT_MAX_LIFETIME.total_seconds())
BASE = new_envelope(type="release", body={}, audience="acme", signer="ab" * 32, now=NOW)


def request(issued_at: int, expires_at: int) -> Envelope:
    return BASE.model_copy(update={"issued_at": issued_at, "expires_at": expires_at})


def outcome(
    issued_at: int,
    expires_at: int,
    now: int = T,
    skew: int = SKEW,
    lifetime: int = LIFETIME,
) -> RequestReason | None:
    try:
        check_times(
            request(issued_at, expires_at),
            now=datetime.fromtimestamp(now, UTC),
            max_skew=timedelta(seconds=skew),
            max_lifetime=timedelta(seconds=lifetime),
        )
    except RequestRejected as exc:
        return exc.reason if exc.message else None
    return None


@pytest.mark.parametrize(
    ("issued_at", "expires_at", "expected"),
    [
        (T, T + LIFETIME, None),  # exactly the longest lifetime
        (T, T + LIFETIME + 1, RequestReason.LIFETIME_TOO_LONG),
        (T, T, None),  # a lifetime of zero is a (short) lifetime
        (T, T - 1, RequestReason.MALFORMED),  # expires before it was issued
        (T + SKEW, T + SKEW + 60, None),  # issued exactly the skew ahead
        (T + SKEW + 1, T + SKEW + 60, RequestReason.FROM_FUTURE),
        (T - 600, T - SKEW, None),  # expired exactly the skew ago
        (T - 600, T - SKEW - 1, RequestReason.EXPIRED),
    ],
    ids=[
        "longest-lifetime",
        "lifetime-plus-one",
        "zero-lifetime",
        "expires-before-issued",
        "issued-skew-ahead",
        "issued-beyond-skew",
        "expired-skew-ago",
        "expired-beyond-skew",
    ],
)
def test_boundaries(issued_at: int, expires_at: int, expected: RequestReason | None) -> None:
    assert outcome(issued_at, expires_at) == expected


def test_expires_before_issued_is_refused_even_inside_every_window() -> None:
    # Within the skew on both ends and a "lifetime" of -1: only the order check refuses.
    assert outcome(T + 1, T, now=T) is RequestReason.MALFORMED


def test_a_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone"):
        check_times(
            BASE,
            now=datetime(2030, 1, 1),  # naive on purpose
            max_skew=DEFAULT_MAX_SKEW,
            max_lifetime=DEFAULT_MAX_LIFETIME,
        )


@given(
    issued=st.integers(T - 2000, T + 2000),
    length=st.integers(-100, 2000),
    skew=st.integers(0, 300),
    lifetime=st.integers(0, 1500),
)
def test_accepts_exactly_what_the_rule_accepts(
    issued: int, length: int, skew: int, lifetime: int
) -> None:
    expires = max(0, issued + length)
    rule: RequestReason | None = None
    if expires < issued:
        rule = RequestReason.MALFORMED
    elif issued > T + skew:
        rule = RequestReason.FROM_FUTURE
    elif expires < T - skew:
        rule = RequestReason.EXPIRED
    elif expires - issued > lifetime:
        rule = RequestReason.LIFETIME_TOO_LONG
    assert outcome(issued, expires, skew=skew, lifetime=lifetime) == rule

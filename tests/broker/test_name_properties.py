"""Hypothesis properties of the one name rule (broker.canonical.check_name) for
users, groups and escrows: every name the rule's grammar makes is accepted as
is; anything accepted is 1-64 printable lowercase ASCII characters that start
and end with a letter or digit, so it is safe in a certificate, a queue name
and a file name; an uppercase variant is refused with a hint naming the
lowercase one."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.canonical import NAME_RULE, check_name
from broker.errors import BrokerError

EDGE = string.ascii_lowercase + string.digits
INNER = EDGE + "._@+-"
names = st.one_of(
    st.sampled_from(EDGE),
    st.builds(
        lambda a, mid, b: a + mid + b,
        st.sampled_from(EDGE),
        st.text(INNER, max_size=62),
        st.sampled_from(EDGE),
    ),
)


@given(names)
def test_every_name_of_the_grammar_is_accepted_as_is(name: str) -> None:
    assert check_name(name) == name


@given(st.text(max_size=80) | st.text(INNER + string.ascii_uppercase + " /\\:\x00", max_size=70))
def test_what_is_accepted_is_safe_everywhere_names_go(text: str) -> None:
    try:
        accepted = check_name(text)
    except BrokerError as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:
        assert refused.hint
        return
    assert accepted == text
    assert 1 <= len(text) <= 64
    assert set(text) <= set(INNER)
    assert text[0] in EDGE
    assert text[-1] in EDGE
    assert text not in {".", ".."}


@given(names.filter(lambda n: any(c.isalpha() for c in n)))
def test_an_uppercase_name_is_refused_with_the_lowercase_one_as_hint(name: str) -> None:
    shouted = name.upper()
    with pytest.raises(BrokerError) as info:
        check_name(shouted, "user name")
    assert repr(shouted) in str(info.value)
    assert info.value.hint == f"names are lowercase: {name}"


@given(st.one_of(st.integers(), st.none(), st.binary(max_size=8)))
def test_a_name_that_is_not_a_string_is_refused_with_the_rule(value: object) -> None:
    with pytest.raises(BrokerError) as info:
        check_name(value)
    assert info.value.hint == f"use {NAME_RULE}"

"""client.agent.verify.parse alone: a message from the wire is refused, with its
reason, unless it is a signed envelope of a known type addressed to this agent.
(Whether its signature is the escrow's is checked after parsing; the agents'
tests with a running escrow are tests/client/test_agent_*.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import new_envelope, sign_envelope
from broker.messages import ErrorCode, MessageType, error_reply
from client.agent.verify import parse
from client.errors import UntrustedMessage

KEY = Ed25519PrivateKey.generate()
BODY = error_reply(
    in_reply_to="0" * 32,
    code=ErrorCode.NOT_ALLOWED,
    message="refused",
    request_type=MessageType.KEY_REQUEST.value,
)


def wire(audience: str, type: str = MessageType.ERROR.value, body: object = None) -> bytes:
    envelope = new_envelope(
        type=type,
        body=BODY.model_dump(mode="json") if body is None else body,  # type: ignore[arg-type]
        audience=audience,
        signer="ab" * 32,
        now=datetime.now(UTC),
    )
    return sign_envelope(envelope, KEY).to_wire()


def test_a_reply_addressed_to_this_agent_parses() -> None:
    parsed = parse(wire("bob"), me="bob")
    assert parsed.envelope.audience == "bob"
    assert parsed.envelope.type == MessageType.ERROR.value


@pytest.mark.parametrize("audience", ["carol", "acme", "bob.", "Bob"])
def test_a_reply_addressed_to_another_party_is_refused(audience: str) -> None:
    with pytest.raises(UntrustedMessage) as info:
        parse(wire(audience), me="bob")
    assert info.value.reason == "wrong_audience"
    assert repr(audience) in str(info.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not an envelope", "malformed"),
        (wire("bob")[:-2], "malformed"),
    ],
    ids=["junk", "truncated"],
)
def test_what_is_not_a_signed_envelope_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(UntrustedMessage) as info:
        parse(data, me="bob")
    assert info.value.reason == reason


def test_an_unknown_message_type_is_refused_before_the_audience() -> None:
    with pytest.raises(UntrustedMessage) as info:
        parse(wire("carol", type="no.such.type", body={}), me="bob")
    assert info.value.reason != "wrong_audience"

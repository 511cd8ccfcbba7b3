"""The Deposit and KeyRelease wire models: round trips and refusals."""

from __future__ import annotations

import base64
import string

import pytest
from pydantic import ValidationError

from broker.deposit import ControlAttributes, Deposit, KeyRelease, Mode, Policy
from tests.client.consign_helpers import RECEIVERS, seal_bytes


@pytest.mark.parametrize("mode", list(Mode))
def test_deposit_json_round_trip_keeps_every_field(mode: Mode) -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:2], mode)
    again = Deposit.model_validate_json(deposit.model_dump_json())
    assert again == deposit
    assert again.policy.digest() == deposit.policy_digest


def test_repr_never_shows_key_material() -> None:
    _, split = seal_bytes({"f": b"x"}, RECEIVERS[:1], Mode.SPLIT)
    _, escrowed = seal_bytes({"f": b"x"}, RECEIVERS[:1], Mode.ESCROWED)
    assert split.escrow_key is not None
    assert repr(split.escrow_key) not in repr(split)
    assert "wrapped_keys" not in repr(escrowed)
    release = split.release_for("bob")
    assert "key_part" not in repr(release)


@pytest.mark.parametrize(
    "change",
    [
        {"policy_digest": b"\x00" * 32},
        {"escrow_key": b"short"},
        {"wrapped_keys": {"00" * 8: b"\x00" * 80}},
        {"consignment_id": "XYZ"},
        {"consignment_digest": "00"},
        {"mode": "other"},
    ],
    ids=["digest-mismatch", "short-k2", "split-with-wraps", "bad-id", "bad-digest", "bad-mode"],
)
def test_inconsistent_split_deposits_are_refused(change: dict[str, object]) -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:1], Mode.SPLIT)
    data = deposit.model_dump() | change
    with pytest.raises(ValidationError):
        Deposit.model_validate(data)


def test_escrowed_deposit_needs_one_wrap_per_receiver() -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:2], Mode.ESCROWED)
    data = deposit.model_dump()
    data["wrapped_keys"] = dict(list(data["wrapped_keys"].items())[:1])
    with pytest.raises(ValidationError):
        Deposit.model_validate(data)
    with pytest.raises(KeyError):
        deposit.release_for("mallory")


def test_non_canonical_base64_is_refused() -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    release = deposit.release_for("bob").model_dump(mode="json")
    release["key_part"] = release["key_part"].rstrip("=") + "\n"
    with pytest.raises(ValidationError):
        KeyRelease.model_validate(release)


def test_base64_with_spare_bits_set_is_refused() -> None:
    # A 32-byte K2 encodes to 43 characters and "=": the last character's low two
    # bits must be zero. Setting one decodes to the same bytes (binascii accepts
    # it), so only the canonical check refuses it.
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    release = deposit.release_for("bob").model_dump(mode="json")
    text = release["key_part"]
    assert len(text) == 44
    assert text[-1] == "="
    assert text[-2] != "="
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    spare = text[:42] + alphabet[alphabet.index(text[42]) | 1] + "="
    assert base64.b64decode(spare, validate=True) == base64.b64decode(text)
    assert KeyRelease.model_validate(release) == deposit.release_for("bob")
    with pytest.raises(ValidationError, match="canonical base64"):
        KeyRelease.model_validate(release | {"key_part": spare})


@pytest.mark.parametrize(
    "attributes",
    [
        {"not_before": 10, "not_after": 5},
        {"max_releases": 0},
        {"cosigners": ["ok", "ok"]},
        {"cosigners": ["../bad"]},
        {"not_before": 1.5},
    ],
)
def test_bad_control_attributes_are_refused(attributes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ControlAttributes.model_validate(attributes)


def test_policy_refuses_duplicate_receivers_and_bad_names() -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    spec = deposit.policy.receivers[0]
    with pytest.raises(ValidationError):
        Policy(escrow="e", sender="alice", receivers=(spec, spec))
    with pytest.raises(ValidationError):
        Policy(escrow="e", sender="alice smith", receivers=(spec,))
    with pytest.raises(ValidationError):
        Policy(escrow="e", sender="alice", receivers=())

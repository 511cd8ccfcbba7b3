"""The header's `policy` and `escrow` lines are bound to the escrow's release: a
header that names another policy or another escrow does not open, even with
every MAC and signature right (as only the sender, who knows K, could make it).
The release is a documented, serialisable type (docs/format.md, "The release")."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.deposit import ControlAttributes, KeyRelease, Mode
from client.consignment import unseal
from client.errors import OpenError
from client.format.header import Header
from tests.client.consign_helpers import ALICE, ESCROW, RECEIVERS, reseal_header, seal_bytes

BOB = RECEIVERS[0]


def _open(sealed: bytes, release: KeyRelease, dest: Path) -> None:
    unseal(
        io.BytesIO(sealed),
        dest,
        identity=BOB.encryption,
        release=release,
        sender_key=ALICE.signing.public_key(),
    )


@pytest.mark.parametrize("mode", list(Mode))
def test_an_unchanged_reseal_still_opens(tmp_path: Path, mode: Mode) -> None:
    """The forging helper itself changes nothing but what it is asked to."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB], mode)
    again = reseal_header(sealed, deposit, BOB, lambda h: h)
    _open(again, deposit.release_for("bob"), tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == b"secret"


def _other_policy(h: Header) -> Header:
    other = bytes(32 - len(b"another")) + b"another"
    return dataclasses.replace(h, policy_digest=other)


def _other_escrow(h: Header) -> Header:
    return dataclasses.replace(h, escrow="elsewhere.example")


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("edit", [_other_policy, _other_escrow], ids=["policy", "escrow"])
def test_a_header_naming_another_policy_or_escrow_does_not_open(
    tmp_path: Path, mode: Mode, edit: object
) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB], mode)
    forged = reseal_header(sealed, deposit, BOB, edit)  # type: ignore[arg-type]
    dest = tmp_path / "out"
    with pytest.raises(OpenError) as info:
        _open(forged, deposit.release_for("bob"), dest)
    assert type(info.value) is OpenError
    assert not dest.exists()


def test_a_release_from_another_escrow_does_not_open(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    release = deposit.release_for("bob").model_copy(update={"escrow": "elsewhere.example"})
    with pytest.raises(OpenError):
        _open(sealed, release, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", list(Mode))
def test_the_release_names_its_escrow_and_round_trips_as_json(mode: Mode) -> None:
    _, deposit = seal_bytes({"f": b"x"}, RECEIVERS[:2], mode)
    release = deposit.release_for("carol")
    assert release.escrow == ESCROW == deposit.policy.escrow
    assert len(release.key_part) == (32 if mode is Mode.SPLIT else 80)
    data = release.model_dump_json()
    assert KeyRelease.model_validate_json(data) == release
    assert set(KeyRelease.model_validate_json(data).model_dump()) == {
        "consignment_id",
        "escrow",
        "key_part",
        "mode",
        "policy_digest",
    }


def test_a_release_without_its_escrow_is_refused() -> None:
    _, deposit = seal_bytes({"f": b"x"}, [BOB], attributes=ControlAttributes())
    data = deposit.release_for("bob").model_dump()
    del data["escrow"]
    with pytest.raises(ValidationError):
        KeyRelease.model_validate(data)

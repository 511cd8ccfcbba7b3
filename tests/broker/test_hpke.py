"""broker's HPKE helpers: a deposit sealed to the escrow and a key part sealed to a receiver
open only with the right key, for the right consignment (and policy digest)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import (
    SealedMessageError,
    open_deposit,
    open_key_part,
    seal_deposit,
    seal_key_part,
)
from tests.client.consign_helpers import RECEIVERS, seal_bytes

CID = "00" * 16
OTHER = "11" * 16


def test_deposit_roundtrip_and_binding() -> None:
    _, deposit = seal_bytes({"a": b"x"}, RECEIVERS[:2])
    escrow = X25519PrivateKey.generate()
    sealed = seal_deposit(deposit, escrow.public_key())
    assert open_deposit(sealed, deposit.consignment_id, escrow) == deposit
    assert deposit.escrow_key is not None
    assert deposit.escrow_key not in sealed
    with pytest.raises(SealedMessageError):  # another consignment's info
        open_deposit(sealed, OTHER, escrow)
    with pytest.raises(SealedMessageError):  # another escrow
        open_deposit(sealed, deposit.consignment_id, X25519PrivateKey.generate())
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(SealedMessageError):
        open_deposit(bytes(flipped), deposit.consignment_id, escrow)


def test_key_part_roundtrip_and_binding() -> None:
    bob, part, digest = X25519PrivateKey.generate(), os.urandom(32), os.urandom(32)
    sealed = seal_key_part(part, bob.public_key(), CID, digest)
    assert open_key_part(sealed, bob, CID, digest) == part
    for key, cid, pd in (
        (X25519PrivateKey.generate(), CID, digest),
        (bob, OTHER, digest),
        (bob, CID, os.urandom(32)),
    ):
        with pytest.raises(SealedMessageError, match="cannot be opened"):
            open_key_part(sealed, key, cid, pd)


def test_a_sealed_deposit_is_not_a_key_part() -> None:
    bob, digest = X25519PrivateKey.generate(), os.urandom(32)
    sealed = seal_key_part(os.urandom(32), bob.public_key(), CID, digest)
    with pytest.raises(SealedMessageError):
        open_deposit(sealed, CID, bob)

"""Canonical means canonical at the escrow (issue 17): a deposit whose JSON is
not canonical is refused through the running worker (`malformed`, detail
`not_canonical`, the state unchanged), and the escrow's own sealed JSON (its key
files, the master keyring, a stored key part) is read only in canonical form."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from broker import DEPOSIT_INFO
from broker.canonical import b64, canonical_json
from broker.errors import EnvelopeError, IdentityFileError
from broker.messages import DepositBody, MessageType
from broker.pki import sealed
from escrow_worker.ca.authority import KEY_KIND, seal_private_key, unseal_private_key
from escrow_worker.handlers.deposit import part_fields
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import _load as load_keyring_plaintext
from tests.broker.pki_helpers import LOG_N
from tests.escrow_worker.helpers import (
    Agent,
    full_snapshot,
    make_escrow,
    request,
    running_worker,
    seal_for,
)
from tests.support import TransportFactory

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)


async def test_a_deposit_whose_json_is_not_canonical_is_refused_and_changes_nothing(
    escrow_location: Location, transport_factory: TransportFactory
) -> None:
    setup = await make_escrow(escrow_location)
    _, deposit = seal_for(setup["alice"], [setup["bob"]])
    value = deposit.model_dump(mode="json")
    loose = json.dumps(value, sort_keys=True, indent=2).encode()  # spaces and newlines
    cid = deposit.consignment_id
    sealed_deposit = SUITE.encrypt(
        loose, setup.encryption_key, info=DEPOSIT_INFO + bytes.fromhex(cid)
    )
    body = DepositBody(consignment_id=cid, sealed_deposit=sealed_deposit)
    async with (
        await setup.open_service() as service,
        running_worker(service, await transport_factory()),
    ):
        alice = await Agent(setup, setup["alice"], await transport_factory()).start()
        before = await full_snapshot(setup)
        reply = await alice.ask(request(setup["alice"], "deposit", body))
        assert reply.type == MessageType.ERROR
        assert (reply.code, reply.body.detail) == ("malformed", "not_canonical")
        assert "not in canonical encoding" in reply.body.message
        after = await full_snapshot(setup)
        decided = ("requests", "seen_requests", "log_entries", "log_parties")
        assert {k: v for k, v in after.items() if k not in decided} == {
            k: v for k, v in before.items() if k not in decided
        }
        # The refusal is in the transaction log: the log grew by that one entry.
        assert len(after["log_entries"]) == len(before["log_entries"]) + 1
        assert after.get("deposits", []) == []
        # the same deposit, canonical, is taken
        good = request(
            setup["alice"],
            "deposit",
            DepositBody(
                consignment_id=cid,
                sealed_deposit=SUITE.encrypt(
                    canonical_json(value),
                    setup.encryption_key,
                    info=DEPOSIT_INFO + bytes.fromhex(cid),
                ),
            ),
        )
        assert (await alice.ask(good)).type == MessageType.DEPOSIT_RECEIPT


def test_an_escrow_key_file_whose_plaintext_is_not_canonical_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    good = seal_private_key(key, b"pw", log_n=LOG_N)
    unseal_private_key(good, b"pw")
    plaintext = sealed.unseal(good, b"pw", kind=KEY_KIND)
    loose = json.dumps(json.loads(plaintext), indent=1).encode()
    with pytest.raises(IdentityFileError) as refused:
        unseal_private_key(sealed.seal(loose, b"pw", kind=KEY_KIND, log_n=LOG_N), b"pw")
    assert refused.value.reason == "inconsistent"
    with pytest.raises(IdentityFileError) as refused:
        unseal_private_key(good[:-1], b"pw")  # without its LF
    assert refused.value.reason == "malformed"


def test_a_master_keyring_whose_plaintext_is_not_canonical_is_refused() -> None:
    entry = {"created_at": 1, "id": "00" * 8, "key": b64(b"k" * 32)}
    assert load_keyring_plaintext(canonical_json({"keys": [entry]})).keys
    for loose in (
        json.dumps({"keys": [entry]}).encode(),
        canonical_json({"keys": [dict(entry, key=b64(b"k" * 32)[:-1])]}),  # base64 unpadded
    ):
        with pytest.raises(IdentityFileError) as refused:
            load_keyring_plaintext(loose)
        assert refused.value.reason == "inconsistent"


def test_a_stored_key_part_is_read_only_in_canonical_form() -> None:
    good = canonical_json({"escrow_key": b64(b"k" * 32), "wrapped_keys": {}})
    assert part_fields(good) == (b"k" * 32, {})
    with pytest.raises(EnvelopeError):
        part_fields(json.dumps(json.loads(good), indent=1).encode())

"""The key schedule's values (`keyschedule.json`, expect "values"): fixed inputs
and every value docs/format.md derives from them, in hex, so an implementation
can check its parts one by one before it opens a whole consignment.

Not a test module: `generate.py` calls it."""

from __future__ import annotations

import dataclasses

from broker.canonical import raw_public_key
from broker.deposit import ControlAttributes, Mode, Policy, ReceiverSpec, key_id
from client.format import keys
from client.format.header import Header, Stanza, chunk_nonce
from tests.client.consign_helpers import ALICE, RECEIVERS
from tests.vectors.common import Vectors, raw_private

BOB = RECEIVERS[0]


def values_vector(v: Vectors) -> None:
    k1 = bytes(range(0x00, 0x20))
    k2 = bytes(range(0x20, 0x40))
    k3 = bytes(range(0x40, 0x60))
    cid = bytes.fromhex("00112233445566778899aabbccddeeff")
    salt = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
    bob_public = raw_public_key(BOB.encryption.public_key())
    policy = Policy(
        escrow="acme",
        sender="alice",
        receivers=(ReceiverSpec(name="bob", encryption_key=bob_public),),
        attributes=ControlAttributes(not_before=1893456000, max_releases=1),
    )
    digest = policy.digest()
    split = keys.content_key(Mode.SPLIT, k1 + k2, cid, digest)
    escrowed = keys.content_key(Mode.ESCROWED, k3, cid, digest)
    info = b"consignment/v1 K1\x00" + cid + digest
    wrapped = keys.wrap(Mode.SPLIT, k1, BOB.encryption.public_key(), cid, digest)
    header = Header(
        consignment_id=cid,
        escrow="acme",
        mode=Mode.SPLIT,
        policy_digest=digest,
        sender_key=raw_public_key(ALICE.signing.public_key()),
        payload_salt=salt,
        payload_size=150_000,
        stanzas=(Stanza(key_id(bob_public), wrapped),),
        mac=bytes(32),
        signature=bytes(64),
    )
    mac = keys.header_mac(split, header.mac_input())
    signed = dataclasses.replace(header, mac=mac)
    values = {
        "k1": k1.hex(),
        "k2": k2.hex(),
        "k3": k3.hex(),
        "id": cid.hex(),
        "payload_salt": salt.hex(),
        "policy_canonical_json": policy.canonical().decode("utf-8"),
        "policy_digest": digest.hex(),
        "receiver_public_key": bob_public.hex(),
        "receiver_key_id": key_id(bob_public).hex(),
        "content_key_split": split.hex(),
        "content_key_escrowed": escrowed.hex(),
        "payload_key": keys.payload_key(split, salt).hex(),
        "header_mac_key": keys.header_mac_key(split).hex(),
        "commitment_key": keys.commitment_key(split).hex(),
        "chunk_nonces_of_3": [chunk_nonce(i, i == 2).hex() for i in range(3)],
        "hpke": {
            "receiver_private_key": raw_private(BOB.encryption).hex(),
            "info": info.hex(),
            "aad": "",
            "enc_and_ciphertext": wrapped.hex(),
            "plaintext": k1.hex(),
        },
        "header_mac_input": header.mac_input().hex(),
        "header_mac": mac.hex(),
        "header_signed_input": signed.signed_input().hex(),
    }
    v.values(
        "keyschedule",
        "the key schedule of a split-mode consignment (payload 150,000 bytes: 3 chunks), "
        "and its escrowed-mode content key, from fixed key parts",
        "Key schedule",
        values,
    )

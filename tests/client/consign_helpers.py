"""Shared helpers for the consignment tests: fixed keys and in-memory sealing."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.deposit import ControlAttributes, Deposit, Mode
from client.consignment import (
    Opened,
    Recipient,
    Sender,
    Source,
    _seal_from_parts,
    seal,
    unseal,
)
from client.format import keys
from client.format.header import TRAILER_SIGNATURE_LABEL, TRAILER_SIZE, Header, parse_header
from client.format.manifest import FileEntry
from client.format.pack import Opener

ESCROW = "amqp://escrow.example/consign"


def x25519(seed: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(b"x25519 " + seed.encode()).digest())


def ed25519(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"ed25519 " + seed.encode()).digest()
    )


@dataclass(frozen=True)
class Party:
    name: str
    signing: Ed25519PrivateKey
    encryption: X25519PrivateKey

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.name, self.encryption.public_key())

    @property
    def sender(self) -> Sender:
        return Sender(self.name, self.signing)


def party(name: str) -> Party:
    return Party(name, ed25519(name), x25519(name))


ALICE = party("alice")
RECEIVERS = [party(n) for n in ("bob", "carol", "dave", "erin", "frank")]


def seal_bytes(
    files: dict[str, bytes],
    receivers: list[Party],
    mode: Mode = Mode.SPLIT,
    sender: Party = ALICE,
    attributes: ControlAttributes | None = None,
    escrow: str = ESCROW,
) -> tuple[bytes, Deposit]:
    out = io.BytesIO()
    deposit = seal(
        [Source(name, io.BytesIO(data), len(data)) for name, data in files.items()],
        out,
        sender=sender.sender,
        receivers=[r.recipient for r in receivers],
        escrow=escrow,
        mode=mode,
        attributes=attributes,
    )
    return out.getvalue(), deposit


def seal_raw_manifest(
    manifest: bytes, payload: bytes, receiver: Party, mode: Mode = Mode.SPLIT
) -> tuple[bytes, Deposit]:
    """Seal a hand-made manifest, bypassing the sealing-side name checks."""
    out = io.BytesIO()

    def opener() -> io.BytesIO:
        return io.BytesIO(payload)

    files: list[tuple[FileEntry, Opener]] = [(FileEntry("x", len(payload)), opener)]
    deposit = _seal_from_parts(
        files,
        out,
        sender=ALICE.sender,
        receivers=[receiver.recipient],
        escrow=ESCROW,
        mode=mode,
        attributes=ControlAttributes(),
        manifest=manifest,
    )
    return out.getvalue(), deposit


def open_bytes(
    consignment: bytes, receiver: Party, deposit: Deposit, sender: Party = ALICE
) -> tuple[bytes, Opened]:
    """Open a one-file consignment into memory."""
    out = io.BytesIO()
    opened = unseal(
        io.BytesIO(consignment),
        out,
        identity=receiver.encryption,
        release=deposit.release_for(receiver.name),
        sender_key=sender.signing.public_key(),
    )
    return out.getvalue(), opened


def reseal_header(
    sealed: bytes,
    deposit: Deposit,
    receiver: Party,
    edit: Callable[[Header], Header],
    sender: Party = ALICE,
) -> bytes:
    """What a sender (who knows K) could write: the header edited by `edit`, with a
    header MAC under the real content key, and both signatures made again. Only
    the edited fields differ; every MAC and signature checks."""
    header = parse_header(io.BytesIO(sealed))
    key = keys.recover_content_key(header, receiver.encryption, deposit.release_for(receiver.name))
    edited = edit(header)
    edited = dataclasses.replace(edited, mac=keys.header_mac(key, edited.mac_input()))
    edited = dataclasses.replace(edited, signature=sender.signing.sign(edited.signed_input()))
    head = edited.serialize()
    payload = sealed[len(header.serialize()) : -TRAILER_SIZE]
    commitment = sealed[-TRAILER_SIZE:][:32]
    body = blake3.blake3(head + payload).digest()
    signature = sender.signing.sign(TRAILER_SIGNATURE_LABEL + body + commitment)
    return head + payload + commitment + signature

"""Shared helpers for the consignment tests: fixed keys and in-memory sealing."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

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
) -> tuple[bytes, Deposit]:
    out = io.BytesIO()
    deposit = seal(
        [Source(name, io.BytesIO(data), len(data)) for name, data in files.items()],
        out,
        sender=sender.sender,
        receivers=[r.recipient for r in receivers],
        escrow=ESCROW,
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

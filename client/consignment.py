"""Seal files into a consignment and open them again: the client's public API.

`seal` encrypts files so that two parts are needed to open them and returns the
Deposit for the escrow; `unseal` opens a consignment given the receiver's private
key and the escrow's KeyRelease. Both stream in bounded memory; the *_async
variants run them in a worker thread so an event loop is never blocked. This module
never touches the network. Every failure to authenticate raises the same OpenError.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from broker.canonical import raw_public_key
from broker.deposit import (
    ControlAttributes,
    Deposit,
    KeyRelease,
    Mode,
    Policy,
    ReceiverAttributes,
    ReceiverSpec,
)
from client._threads import in_thread
from client.errors import OpenError, SealError
from client.format import keys
from client.format.header import (
    TRAILER_SIGNATURE_LABEL,
    TRAILER_SIZE,
    FormatError,
    Header,
    parse_header,
)
from client.format.manifest import FileEntry, ManifestFormatError, collect, encode
from client.format.pack import ConcatReader, Opener, atomic_output, path_opener, stream_opener
from client.format.stream import PayloadError, decrypt_payload, encrypt_payload
from client.format.unpack import Unpacker, open_input, read_up_to

__all__ = [
    "ConsignmentInfo",
    "FileEntry",
    "Opened",
    "Recipient",
    "Sender",
    "Source",
    "consignment_digest",
    "inspect",
    "seal",
    "seal_async",
    "unseal",
    "unseal_async",
]

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Recipient:
    """A receiver as the sender knows it: registered name and encryption key,
    and the conditions of its own, if any (bound into the policy digest)."""

    name: str
    public_key: X25519PublicKey
    attributes: ReceiverAttributes | None = None


@dataclass(frozen=True)
class Sender:
    """The sealing identity: registered name and Ed25519 signing key."""

    name: str
    signing_key: Ed25519PrivateKey = field(repr=False)


@dataclass(frozen=True)
class Source:
    """A file to seal that is not on disk: a name, a readable object and its size."""

    name: str
    fileobj: BinaryIO
    size: int
    mode: int = 0o644


@dataclass(frozen=True)
class ConsignmentInfo:
    """What the header says, before any key is used (authentic only if verified)."""

    consignment_id: str
    escrow: str
    mode: Mode
    policy_digest: bytes
    sender_key: bytes
    payload_size: int
    receiver_key_ids: tuple[bytes, ...]
    signature_verified: bool


@dataclass(frozen=True)
class Opened:
    consignment_id: str
    files: list[FileEntry]


# -- sealing --------------------------------------------------------------------


def seal(
    inputs: Sequence[Path | str | Source],
    output: Path | str | BinaryIO,
    *,
    sender: Sender,
    receivers: Sequence[Recipient],
    escrow: str,
    mode: Mode = Mode.SPLIT,
    attributes: ControlAttributes | None = None,
    progress: Progress | None = None,
) -> Deposit:
    """Seal files into `output` and return the Deposit for the escrow.

    In split mode the consignment carries K1 wrapped to every receiver and the
    deposit carries K2; in escrowed mode the deposit carries K3 wrapped to every
    receiver and the consignment carries no key material. A path output is written
    to a temporary file and renamed into place only when sealing succeeded.
    """
    return _seal_from_parts(
        _collect_inputs(inputs),
        output,
        sender=sender,
        receivers=receivers,
        escrow=escrow,
        mode=mode,
        attributes=attributes or ControlAttributes(),
        progress=progress,
    )


def _collect_inputs(inputs: Sequence[Path | str | Source]) -> list[tuple[FileEntry, Opener]]:
    if not inputs:
        raise SealError("nothing to seal", hint="name at least one file or directory")
    out: list[tuple[FileEntry, Opener]] = []
    for item in inputs:
        if isinstance(item, Source):
            if item.size < 0 or not 0 <= item.mode <= 0o777:
                raise SealError(f"source {item.name!r} has a negative size or a bad mode")
            out.append((FileEntry(item.name, item.size, item.mode), stream_opener(item.fileobj)))
        else:
            out.extend((entry, path_opener(path)) for entry, path in collect([Path(item)]))
    return out


def _seal_from_parts(
    files: list[tuple[FileEntry, Opener]],
    output: Path | str | BinaryIO,
    *,
    sender: Sender,
    receivers: Sequence[Recipient],
    escrow: str,
    mode: Mode,
    attributes: ControlAttributes,
    progress: Progress | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
    manifest: bytes | None = None,
) -> Deposit:
    """Seal with injectable randomness, clock and (for test vectors) raw manifest."""
    try:
        policy = Policy(
            escrow=escrow,
            sender=sender.name,
            receivers=tuple(
                ReceiverSpec(
                    name=r.name,
                    encryption_key=raw_public_key(r.public_key),
                    attributes=r.attributes,
                )
                for r in receivers
            ),
            attributes=attributes,
        )
    except ValueError as exc:
        raise SealError(f"invalid policy: {exc}") from exc
    prefix = manifest if manifest is not None else encode([e for e, _ in files])
    payload_size = len(prefix) + sum(e.size for e, _ in files)
    consignment_id = rng(16)
    policy_digest = policy.digest()
    wrap_to = [(s.key_id, r.public_key) for s, r in zip(policy.receivers, receivers, strict=True)]
    made = keys.new_content_key(mode, wrap_to, consignment_id, policy_digest, rng)
    key = made.key
    unsigned = Header(
        consignment_id=consignment_id,
        escrow=escrow,
        mode=mode,
        policy_digest=policy_digest,
        sender_key=raw_public_key(sender.signing_key.public_key()),
        payload_salt=rng(16),
        payload_size=payload_size,
        stanzas=made.stanzas,
        mac=bytes(32),
        signature=bytes(64),
    )
    with_mac = _replace(unsigned, mac=keys.header_mac(key, unsigned.mac_input()))
    header = _replace(with_mac, signature=sender.signing_key.sign(with_mac.signed_input()))
    header_bytes = header.serialize()

    body_hash = blake3.blake3(header_bytes)
    plain_hash = blake3.blake3(key=keys.commitment_key(key))
    reader = ConcatReader(prefix, files)
    step = _counting(progress, payload_size)

    with atomic_output(output) as out:
        try:
            out.write(header_bytes)
            encrypt_payload(
                keys.payload_key(key, header.payload_salt),
                payload_size,
                reader,
                out,
                plain_hash,
                body_hash,
                step,
            )
            reader.finish()
        finally:
            reader.close()
        commitment = plain_hash.digest()
        signature = sender.signing_key.sign(
            TRAILER_SIGNATURE_LABEL + body_hash.digest() + commitment
        )
        trailer = commitment + signature
        out.write(trailer)
        body_hash.update(trailer)
    return Deposit(
        consignment_id=consignment_id.hex(),
        mode=mode,
        policy=policy,
        policy_digest=policy_digest,
        escrow_key=made.escrow_key,
        wrapped_keys=made.wrapped_keys,
        consignment_digest=body_hash.hexdigest(),
        plaintext_commitment=commitment.hex(),
        consignment_size=len(header_bytes) + header.payload_ciphertext_size + TRAILER_SIZE,
        sealed_at=int(now()),
    )


def _replace(header: Header, **changes: bytes) -> Header:
    return dataclasses.replace(header, **changes)  # type: ignore[arg-type]


# -- opening --------------------------------------------------------------------


def inspect(
    source: Path | str | BinaryIO, *, sender_key: Ed25519PublicKey | None = None
) -> ConsignmentInfo:
    """Read the header. Without sender_key nothing in the answer is authenticated."""
    with open_input(source) as src:
        try:
            header = parse_header(src)
        except FormatError:
            raise OpenError() from None
    verified = False
    if sender_key is not None:
        _verify_header_signature(header, sender_key)
        verified = True
    return ConsignmentInfo(
        consignment_id=header.consignment_id.hex(),
        escrow=header.escrow,
        mode=header.mode,
        policy_digest=header.policy_digest,
        sender_key=header.sender_key,
        payload_size=header.payload_size,
        receiver_key_ids=tuple(s.key_id for s in header.stanzas),
        signature_verified=verified,
    )


def consignment_digest(source: Path | str | BinaryIO) -> str:
    """BLAKE3 of every byte, to compare with the escrow's before asking for keys."""
    h = blake3.blake3()
    with open_input(source) as src:
        while block := src.read(1 << 20):
            h.update(block)
    return str(h.hexdigest())


def _verify_header_signature(header: Header, sender_key: Ed25519PublicKey) -> None:
    if not hmac.compare_digest(header.sender_key, raw_public_key(sender_key)):
        raise OpenError()
    try:
        sender_key.verify(header.signature, header.signed_input())
    except InvalidSignature:
        raise OpenError() from None


def _content_key(header: Header, identity: X25519PrivateKey, release: KeyRelease) -> bytes:
    try:
        return keys.recover_content_key(header, identity, release)
    except keys.UnwrapError:
        raise OpenError() from None


def unseal(
    source: Path | str | BinaryIO,
    destination: Path | str | BinaryIO,
    *,
    identity: X25519PrivateKey,
    release: KeyRelease,
    sender_key: Ed25519PublicKey,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Opened:
    """Open a consignment into a directory (or, for one file, a writable stream).

    The header signature and MAC are checked before any output byte is written;
    files are staged and moved into place only after the last chunk, the trailer
    signature and the plaintext commitment have checked.
    """
    dest: Path | BinaryIO = (
        Path(destination) if isinstance(destination, str | Path) else destination
    )
    with open_input(source) as src:
        try:
            header = parse_header(src)
        except FormatError:
            raise OpenError() from None
        _verify_header_signature(header, sender_key)
        key = _content_key(header, identity, release)
        header_bytes = header.serialize()
        body_hash = blake3.blake3(header_bytes)
        plain_hash = blake3.blake3(key=keys.commitment_key(key))
        unpacker = Unpacker(dest, header.payload_size, overwrite)
        step = _counting(progress, header.payload_size)

        try:
            decrypt_payload(
                keys.payload_key(key, header.payload_salt),
                header.payload_size,
                src,
                unpacker,
                plain_hash,
                body_hash,
                step,
            )
            trailer = read_up_to(src, TRAILER_SIZE)
            if len(trailer) != TRAILER_SIZE or src.read(1):
                raise OpenError()
            commitment, signature = trailer[:32], trailer[32:]
            try:
                sender_key.verify(
                    signature, TRAILER_SIGNATURE_LABEL + body_hash.digest() + commitment
                )
            except InvalidSignature:
                raise OpenError() from None
            if not hmac.compare_digest(plain_hash.digest(), commitment):
                raise OpenError()
            entries = unpacker.commit()  # all or nothing; a refusal found on the way

        except (PayloadError, ManifestFormatError):
            unpacker.abort()
            raise OpenError() from None
        except BaseException:
            unpacker.abort()
            raise
    return Opened(consignment_id=header.consignment_id.hex(), files=entries)


def _counting(progress: Progress | None, total: int) -> Callable[[int], None]:
    """The payload stream's per-segment callback, reporting (done, total) to `progress`."""
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    return step


seal_async = in_thread(seal)
unseal_async = in_thread(unseal)

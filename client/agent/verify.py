"""Checks of messages from the wire, before an agent uses anything in them.

Pure functions: wire bytes, certificates and `now` in; a verified message or
`UntrustedMessage` out. The agent decides where the keys come from (its cached
directory) and what to do with a refusal. Nothing unsigned is acted on: AMQP
properties never reach this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel

from broker.envelope import Envelope, SignedEnvelope, verify_envelope_signature
from broker.errors import BrokerError
from broker.messages import (
    ErrorBody,
    ErrorCode,
    LookupReplyBody,
    MessageType,
    UnknownMessage,
    parse_body,
)
from broker.pki.checks import check_encryption_certificate
from broker.pki.profile import fingerprint, load_certificate
from client.errors import UntrustedCertificate, UntrustedMessage, _as_client_errors
from client.trust import verify_signing_certificate

#: Messages only the escrow signs.
FROM_ESCROW: Final = frozenset(
    {
        MessageType.DEPOSIT_RECEIPT,
        MessageType.KEY_RELEASE,
        MessageType.REVOKE_REPLY,
        MessageType.STATUS_REPLY,
        MessageType.LOOKUP_REPLY,
        MessageType.ERROR,
        MessageType.EVENT,
        MessageType.NOTIFY,
        MessageType.RECEIPT_REPLY,
        MessageType.COSIGN_REPLY,
        MessageType.AGREEMENT_REPLY,
        MessageType.BATCH_REPLY,
        MessageType.HISTORY_REPLY,
    }
)
#: The reply types that may answer each request type.
REPLIES: Final = {
    MessageType.LOOKUP: frozenset({MessageType.LOOKUP_REPLY, MessageType.ERROR}),
    MessageType.DEPOSIT: frozenset({MessageType.DEPOSIT_RECEIPT, MessageType.ERROR}),
    MessageType.KEY_REQUEST: frozenset({MessageType.KEY_RELEASE, MessageType.ERROR}),
    MessageType.REVOKE: frozenset({MessageType.REVOKE_REPLY, MessageType.ERROR}),
    MessageType.STATUS: frozenset({MessageType.STATUS_REPLY, MessageType.ERROR}),
    MessageType.RECEIPT: frozenset({MessageType.RECEIPT_REPLY, MessageType.ERROR}),
    MessageType.COSIGN: frozenset({MessageType.COSIGN_REPLY, MessageType.ERROR}),
    MessageType.AGREEMENT: frozenset({MessageType.AGREEMENT_REPLY, MessageType.ERROR}),
    MessageType.BATCH: frozenset({MessageType.BATCH_REPLY, MessageType.ERROR}),
    MessageType.HISTORY: frozenset({MessageType.HISTORY_REPLY, MessageType.ERROR}),
}


#: `error` codes that decide nothing (docs/protocol.md, "Decisions"): the
#: escrow stored no decision with them, and some are what it answers a copy of a
#: request it could not authenticate. Such a reply never settles a request.
NOT_DECISIONS: Final = frozenset(
    {
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.STALE,
        ErrorCode.REPLAYED,
        ErrorCode.MALFORMED,
        ErrorCode.INTERNAL,
        ErrorCode.UNKNOWN_TYPE,
    }
)
#: Of those, the ones the same signed bytes would get again (they were
#: authenticated): waiting for another answer to them is pointless.
FINAL_FOR_THESE_BYTES: Final = frozenset(
    {ErrorCode.STALE, ErrorCode.REPLAYED, ErrorCode.MALFORMED, ErrorCode.UNKNOWN_TYPE}
)


def decides(body: BaseModel) -> bool:
    """Whether a reply decides its request (anything but an `error` in
    `NOT_DECISIONS`)."""
    return not (isinstance(body, ErrorBody) and body.code in NOT_DECISIONS)


@dataclass(frozen=True)
class Unverified:
    """A message parsed but not yet authenticated: use it only to find the key."""

    signed: SignedEnvelope
    envelope: Envelope
    body: BaseModel


@dataclass(frozen=True)
class Certificates:
    """A directory entry as cached: PEM certificates and the CA-signed CRL."""

    name: str
    signing: x509.Certificate
    encryption: x509.Certificate
    crl: x509.CertificateRevocationList


def parse(wire: bytes, *, me: str) -> Unverified:
    """Parse wire bytes into envelope and body; refuse what is not for `me`."""
    try:
        signed = SignedEnvelope.from_wire(wire)
        envelope = signed.unverified()
    except BrokerError as exc:
        raise UntrustedMessage("malformed", f"a message is not a signed envelope: {exc}") from exc
    try:
        body = parse_body(envelope.type, envelope.version, envelope.body)
    except UnknownMessage as exc:
        raise UntrustedMessage(exc.code, str(exc)) from exc
    if envelope.audience != me:
        raise UntrustedMessage(
            "wrong_audience", f"a {envelope.type} message is addressed to {envelope.audience!r}"
        )
    return Unverified(signed, envelope, body)


def certificates(
    name: str, signing_pem: str | bytes, encryption_pem: str | bytes, crl_der: bytes
) -> Certificates:
    try:
        signing = load_certificate(_bytes(signing_pem))
        encryption = load_certificate(_bytes(encryption_pem))
        crl = x509.load_der_x509_crl(crl_der)
    except (BrokerError, ValueError) as exc:
        raise UntrustedMessage(
            "malformed", f"the directory's answer for {name!r} holds no valid certificates"
        ) from exc
    return Certificates(name, signing, encryption, crl)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value


def signing_key(
    certs: Certificates, *, ca: x509.Certificate, now: datetime, escrow: bool
) -> Ed25519PublicKey:
    """The checked Ed25519 key of `certs` (the escrow's own when `escrow`)."""
    return verify_signing_certificate(
        certs.signing, ca=ca, crl=certs.crl, now=now, name=certs.name, escrow=escrow
    )


def encryption_key(
    certs: Certificates, *, ca: x509.Certificate, now: datetime, escrow: bool
) -> X25519PublicKey:
    """The checked X25519 key of `certs` (the escrow's own when `escrow`)."""
    with _as_client_errors():
        return check_encryption_certificate(
            certs.encryption, ca=ca, crl=certs.crl, now=now, expected_name=certs.name, escrow=escrow
        )


def verify_with(message: Unverified, certs: Certificates, key: Ed25519PublicKey) -> None:
    """The message is signed by the holder of `certs` (fingerprint and signature)."""
    if message.envelope.signer != fingerprint(certs.signing):
        raise UntrustedMessage(
            "wrong_signer",
            f"a {message.envelope.type} message is not signed by {certs.name!r}",
        )
    try:
        verify_envelope_signature(message.signed, key)
    except BrokerError as exc:
        raise UntrustedMessage(
            "bad_signature", f"a {message.envelope.type} message has a bad signature"
        ) from exc


def self_certified_escrow(
    message: Unverified, *, escrow: str, ca: x509.Certificate, now: datetime
) -> Certificates | None:
    """A lookup reply for the escrow's own name carries the certificate that signs
    it: return those certificates if they check as the escrow's and sign it."""
    body = message.body
    if message.envelope.type != MessageType.LOOKUP_REPLY or getattr(body, "name", None) != escrow:
        return None
    certs = certificates(
        escrow,
        getattr(body, "signing_certificate", ""),
        getattr(body, "encryption_certificate", ""),
        getattr(body, "crl", b""),
    )
    try:
        key = signing_key(certs, ca=ca, now=now, escrow=True)
        encryption_key(certs, ca=ca, now=now, escrow=True)
    except UntrustedCertificate as exc:
        raise UntrustedMessage(
            "not_from_escrow", f"the escrow's certificate is refused: {exc.message}", exc.hint
        ) from exc
    verify_with(message, certs, key)
    return certs


def check_subject(request_type: MessageType, subject: str, body: BaseModel) -> None:
    """A reply must be about what its request asked: the name looked up, or the
    consignment (and for a key request the digest) it named. Checked before the
    reply is stored, so a forged or confused reply cannot stand in for the real one."""
    if isinstance(body, LookupReplyBody):
        if body.name != subject:
            raise UntrustedMessage(
                "unexpected_reply",
                f"a lookup reply for {body.name!r} answers a lookup of {subject!r}",
            )
        return
    cid = getattr(body, "consignment_id", None)
    if request_type is MessageType.LOOKUP or cid is None:
        return
    wanted = subject.split(":")[0]
    digest = getattr(body, "consignment_digest", None)
    if cid != wanted or (
        request_type is MessageType.KEY_REQUEST
        and digest is not None
        and digest != subject.split(":")[1]
    ):
        raise UntrustedMessage(
            "wrong_consignment",
            f"a {request_type} reply is about consignment {cid}, not {wanted} as asked",
        )


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")

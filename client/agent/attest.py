"""Receipts and agreements on the agent's side: signing a statement, and
verifying one the escrow forwarded (`broker.attest`).

`sign` makes the statement a receiver (receipt) or a co-signer (agreement)
sends. `check` verifies a forwarded `Attestation` on its own, as a proof that
must hold without trusting the escrow: the certificate it carries is issued by
the agent's CA, was valid when the escrow recorded the statement, is not on the
CRL given, is a signing certificate of the party the statement names, and its
key verifies the signature in the statement kind's context. Pure functions: no
I/O; this module must never accept a statement whose signature it did not check.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.attest import Attestation, Statement, StatementKind, sign_statement
from broker.attest import statement_signature_valid as _signature_valid
from broker.errors import BrokerError, CertificateRejected
from broker.messages import EventBody
from broker.pki.checks import check_signing_certificate
from broker.pki.profile import fingerprint, load_certificate
from client.agent.types import Attested
from client.errors import UntrustedMessage


def sign(
    key: Ed25519PrivateKey,
    *,
    kind: StatementKind,
    signer: str,
    consignment_id: str,
    consignment_digest: str,
    policy_digest: bytes,
    now: int,
) -> tuple[Statement, bytes]:
    """A statement of `kind` by `signer` about the consignment, and its signature."""
    statement = Statement(
        kind=kind,
        consignment_id=consignment_id,
        consignment_digest=consignment_digest,
        policy_digest=policy_digest,
        signer=signer,
        signed_at=now,
    )
    return statement, sign_statement(statement, key)


def check(
    attestation: Attestation,
    *,
    ca: x509.Certificate,
    crl: x509.CertificateRevocationList,
    at: int,
) -> str:
    """Verify `attestation` as it stood at `at` (when the escrow recorded it);
    return its certificate's fingerprint. Raises `UntrustedMessage`
    ("bad_attestation") saying what does not hold."""
    statement = attestation.statement
    try:
        cert = load_certificate(attestation.certificate.encode("ascii"))
        key = check_signing_certificate(
            cert,
            ca=ca,
            crl=crl,
            now=datetime.fromtimestamp(at, UTC),
            expected_name=statement.signer,
            require_current_crl=False,
        )
    except (BrokerError, CertificateRejected, UnicodeError, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        raise UntrustedMessage(
            "bad_attestation",
            f"the {statement.kind.value} of {statement.signer!r} comes with a certificate "
            f"that does not hold: {message}",
        ) from exc
    if not _signature_valid(statement, attestation.signature, key):
        raise UntrustedMessage(
            "bad_attestation",
            f"the {statement.kind.value} of {statement.signer!r} has a signature that does not "
            "verify with its certificate",
        )
    return fingerprint(cert)


def check_event(
    event: EventBody, *, ca: x509.Certificate, crl: x509.CertificateRevocationList | None
) -> None:
    """An escrow event that carries a receipt or agreement: the statement is
    about the event's consignment and signer, and verifies (`check`)."""
    attestation = event.attestation
    if attestation is None:
        return
    statement = attestation.statement
    if statement.consignment_id != event.consignment_id or statement.signer != event.receiver:
        raise UntrustedMessage(
            "bad_attestation",
            f"a {event.kind.value} event carries a statement about another consignment or signer",
        )
    if crl is None:
        raise UntrustedMessage(
            "bad_attestation", "no revocation list of the escrow to check the statement against"
        )
    check(attestation, ca=ca, crl=crl, at=event.at)


def attested(
    event: EventBody,
    wire: bytes,
    *,
    ca: x509.Certificate,
    crl: x509.CertificateRevocationList | None,
) -> Attested:
    """The record of a kept event's statement, verified again now."""
    attestation = event.attestation
    assert attestation is not None
    statement = attestation.statement
    problem: str | None = None
    try:
        check_event(event, ca=ca, crl=crl)
    except UntrustedMessage as exc:
        problem = exc.message
    try:
        cert_fingerprint = fingerprint(load_certificate(attestation.certificate.encode("ascii")))
    except (BrokerError, UnicodeError, ValueError):
        cert_fingerprint = ""
    return Attested(
        kind=statement.kind,
        consignment_id=statement.consignment_id,
        signer=statement.signer,
        signed_at=statement.signed_at,
        recorded_at=event.at,
        consignment_digest=statement.consignment_digest,
        policy_digest=statement.policy_digest,
        certificate_fingerprint=cert_fingerprint,
        verified=problem is None,
        problem=problem,
        event_wire=wire,
        signature=attestation.signature,
    )

"""Authenticating a signed request envelope at the escrow.

Order (cheapest refusal that needs no trust first, then trust, then claims):
 1. wire form and payload parse, strictly canonical          -> MALFORMED
 2. signer's certificate found in the directory by fingerprint -> UNKNOWN_SIGNER
 3. certificate: CA chain, validity, CRL as stored now, signing usage
                                                           -> CertificateRejected
 4. Ed25519 signature over the payload                       -> BAD_SIGNATURE
 5. audience is this escrow                                 -> WRONG_AUDIENCE
 6. times, with the clock injected: issued_at not beyond now + skew (FROM_FUTURE),
    expires_at not before now - skew (EXPIRED), lifetime bounded
    (LIFETIME_TOO_LONG)
 7. replay: request id and nonce never seen (REPLAYED), recorded only here, last.
`authenticate_request` does 1-6 and writes nothing; the service records 7
(`state.replay`) in the transaction of the decision. This module must never act
on a field of the envelope before step 4 except to find the signer's key, and
must never record anything for a refused request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from broker.envelope import Envelope, SignedEnvelope, check_envelope_signature
from broker.errors import BrokerError
from broker.pki.checks import check_signing_certificate, require_aware
from escrow_worker.ca.directory import certificate_by_fingerprint, current_crl
from escrow_worker.errors import RequestReason, RequestRejected
from escrow_worker.state.base import Tx
from escrow_worker.state.replay import ReplayKey

DEFAULT_MAX_SKEW = timedelta(minutes=2)
DEFAULT_MAX_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True)
class VerifiedRequest:
    """An authenticated request: what it says, and who sent it."""

    envelope: Envelope
    sender: str
    certificate: x509.Certificate

    def replay_key(self, max_skew: timedelta = DEFAULT_MAX_SKEW) -> ReplayKey:
        return ReplayKey(
            request_id=self.envelope.request_id,
            nonce=self.envelope.nonce,
            signer=self.envelope.signer,
            keep_until=self.envelope.expires_at + int(max_skew.total_seconds()),
        )


def _reject(reason: RequestReason, message: str, hint: str | None = None) -> RequestRejected:
    return RequestRejected(reason, message, hint)


def check_times(
    envelope: Envelope, *, now: datetime, max_skew: timedelta, max_lifetime: timedelta
) -> None:
    """Pure freshness check of an envelope against the escrow's clock."""
    require_aware(now)
    t = int(now.timestamp())
    skew = int(max_skew.total_seconds())
    if envelope.expires_at < envelope.issued_at:
        raise _reject(RequestReason.MALFORMED, "request expires before it was issued")
    if envelope.issued_at > t + skew:
        raise _reject(
            RequestReason.FROM_FUTURE,
            f"request was issued {envelope.issued_at - t} s in the future",
            "check the sender's clock",
        )
    if envelope.expires_at < t - skew:
        raise _reject(
            RequestReason.EXPIRED,
            f"request expired {t - envelope.expires_at} s ago",
            "send a new request; check the sender's clock",
        )
    if envelope.expires_at - envelope.issued_at > int(max_lifetime.total_seconds()):
        raise _reject(
            RequestReason.LIFETIME_TOO_LONG,
            f"request lifetime exceeds {int(max_lifetime.total_seconds())} s",
        )


async def authenticate_request(
    tx: Tx,
    data: bytes | tuple[SignedEnvelope, Envelope],
    *,
    audience: str,
    ca: x509.Certificate,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
    check_freshness: bool = True,
) -> VerifiedRequest:
    """Steps 1-6: everything but replay. Writes nothing.

    With `check_freshness=False` step 6 is left to the caller (`check_times`): the
    escrow worker first looks for a stored reply to the request id, which it sends
    again even after the request has expired. `data` is the wire bytes, or the
    envelope already parsed from them (`SignedEnvelope`, its `unverified()`)."""
    if isinstance(data, tuple):
        signed, claimed = data
    else:
        try:
            signed = SignedEnvelope.from_wire(data)
            claimed = signed.unverified()
        except BrokerError as exc:
            raise _reject(RequestReason.MALFORMED, exc.message, exc.hint) from exc
    record = await certificate_by_fingerprint(tx, claimed.signer)
    if record is None:
        raise _reject(
            RequestReason.UNKNOWN_SIGNER,
            "the request names a certificate this escrow never issued",
            "register with this escrow and sign with its certificate",
        )
    key = check_signing_certificate(
        record.certificate,
        ca=ca,
        crl=await current_crl(tx),
        now=now,
        expected_name=record.name,
        # The escrow's own stored CRL is authoritative even past its nextUpdate.
        require_current_crl=False,
    )
    try:
        check_envelope_signature(signed, key)
    except BrokerError as exc:
        raise _reject(RequestReason.BAD_SIGNATURE, exc.message, exc.hint) from exc
    envelope = claimed
    if envelope.audience != audience:
        raise _reject(
            RequestReason.WRONG_AUDIENCE,
            f"request is addressed to escrow {envelope.audience!r}, not {audience!r}",
            "send it to the escrow it names",
        )
    if check_freshness:
        check_times(envelope, now=now, max_skew=max_skew, max_lifetime=max_lifetime)
    return VerifiedRequest(envelope, record.name, record.certificate)

"""The certificates an agent relies on: the escrow's and each party's, as the
escrow's directory answered, cached in the agent's store and checked against the
CA and the CRL at every use (the escrow's own certificates for the escrow's name).

`Directory` is the cache and the checks. It never asks the escrow: the agent's
`lookup` does (a signed request), and the inbox runs the lookups a message needs
(`NeedLookup`) in tasks of their own. This module must never hand out a key it
did not check just now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.messages import LookupReplyBody
from broker.pki.profile import fingerprint
from client.agent import verify
from client.agent.store import DirectoryEntry
from client.agent.types import Party
from client.errors import UntrustedCertificate, UntrustedMessage


class NeedLookup(Exception):
    """A message needs certificates of `name` the agent does not hold (or holds
    with a stale CRL): look them up, then process the message again."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Directory:
    """The certificates of the escrow and of the parties, for one agent."""

    def __init__(self, escrow: str, ca: x509.Certificate, clock: Callable[[], datetime]) -> None:
        self.escrow = escrow
        self._ca = ca
        self._clock = clock
        self._escrow_certs: verify.Certificates | None = None
        self._parties: dict[str, verify.Certificates] = {}
        #: Names looked up during this session (their answer is the latest word).
        self.checked: set[str] = set()
        #: Why the last lookup of a name failed.
        self.failed: dict[str, str] = {}

    def load(self, entries: list[DirectoryEntry]) -> None:
        """Take the cached answers of earlier runs; the escrow's only if it still checks."""
        for entry in entries:
            try:
                certs = verify.certificates(
                    entry.name, entry.signing_certificate, entry.encryption_certificate, entry.crl
                )
            except UntrustedMessage:
                continue
            if certs.name == self.escrow:
                self._escrow_certs = certs
            else:
                self._parties[certs.name] = certs
        if self._escrow_certs is not None:
            try:
                verify.signing_key(self._escrow_certs, ca=self._ca, now=self._clock(), escrow=True)
            except UntrustedCertificate:
                self._escrow_certs = None  # stale CRL or renewed: look it up again

    @property
    def knows_escrow(self) -> bool:
        return self._escrow_certs is not None

    @property
    def ca(self) -> x509.Certificate:
        return self._ca

    def crl(self) -> x509.CertificateRevocationList | None:
        """The CA-signed CRL that came with the escrow's own certificates."""
        return None if self._escrow_certs is None else self._escrow_certs.crl

    def remember(self, certs: verify.Certificates) -> None:
        self.checked.add(certs.name)
        if certs.name == self.escrow:
            self._escrow_certs = certs
        else:
            self._parties[certs.name] = certs

    def party(self, name: str, body: LookupReplyBody) -> Party:
        """`name` as the directory answered, checked; remembered from now on."""
        certs = verify.certificates(
            name, body.signing_certificate, body.encryption_certificate, body.crl
        )
        now, escrow = self._clock(), name == self.escrow
        signing = verify.signing_key(certs, ca=self._ca, now=now, escrow=escrow)
        encryption = verify.encryption_key(certs, ca=self._ca, now=now, escrow=escrow)
        self.remember(certs)
        return Party(name, signing, encryption, fingerprint(certs.signing))

    def escrow_party(self) -> Party | None:
        """The escrow as cached, if its certificates still check (else look it up)."""
        certs = self._escrow_certs
        if certs is None:
            return None
        now = self._clock()
        try:
            signing = verify.signing_key(certs, ca=self._ca, now=now, escrow=True)
            encryption = verify.encryption_key(certs, ca=self._ca, now=now, escrow=True)
        except UntrustedCertificate:
            return None
        return Party(self.escrow, signing, encryption, fingerprint(certs.signing))

    def check_escrow_message(self, message: verify.Unverified) -> None:
        """The message is the escrow's: signed with its checked key. A lookup reply
        for the escrow's own name carries the certificate that signs it: how the
        agent learns it, and a fresh CRL, the first time."""
        now = self._clock()
        certified = verify.self_certified_escrow(message, escrow=self.escrow, ca=self._ca, now=now)
        if certified is not None:
            return
        certs = self._escrow_certs
        if certs is not None and message.envelope.signer == fingerprint(certs.signing):
            try:
                key = verify.signing_key(certs, ca=self._ca, now=now, escrow=True)
            except UntrustedCertificate as exc:
                if exc.reason != "crl_stale":
                    raise
                raise NeedLookup(self.escrow) from exc  # a fresh CRL, then try again
            verify.verify_with(message, certs, key)
            return
        if self.escrow not in self.checked:
            raise NeedLookup(self.escrow)  # the escrow may have a new certificate
        raise UntrustedMessage(
            "not_from_escrow",
            f"a {message.envelope.type} message is not signed by escrow {self.escrow!r}",
        )

    def chunk_signer(
        self, message: verify.Unverified
    ) -> tuple[verify.Certificates, Ed25519PublicKey]:
        """The checked certificates and key of the chunk's claimed sender."""
        sender = message.envelope.reply_to
        if not sender:
            raise UntrustedMessage("malformed", "a consignment chunk names no sender")
        if sender in self.failed:
            raise UntrustedMessage(
                "unknown_sender",
                f"a consignment chunk claims to come from {sender!r}: {self.failed[sender]}",
            )
        certs = self._parties.get(sender)
        if certs is None or (
            message.envelope.signer != fingerprint(certs.signing) and sender not in self.checked
        ):
            raise NeedLookup(sender)
        try:
            key = verify.signing_key(certs, ca=self._ca, now=self._clock(), escrow=False)
        except UntrustedCertificate as exc:
            if exc.reason != "crl_stale" or sender in self.checked:
                raise
            raise NeedLookup(sender) from exc  # a fresh CRL, then try again
        return certs, key

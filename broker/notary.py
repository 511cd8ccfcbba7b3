"""Notary archives: a self-contained, offline-verifiable extract of an escrow's
transaction log (docs/log.md, "Notary archive").

An `Archive` holds a run of entries, the signed heads that cover it (one at its
last entry at least), the escrow's CA certificate, the escrow signing
certificates that signed those heads, the certificates of the parties whose
requests it holds, and the CRL. `verify_archive` checks it without the escrow:
the CA (against a CA the verifier pins, when given), each head signer's
certificate against that CA, then the chain and the heads (`broker.txlog`).

Pure apart from parsing: this module must never read files, the network or a
clock (the caller hands in bytes and, if it wants, the expected CA and escrow).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.canonical import check_name
from broker.errors import BrokerError, CertificateRejected
from broker.pki.checks import check_signing_certificate
from broker.pki.profile import fingerprint, load_crl, to_pem
from broker.txlog import Entry, LogBroken, SignedHead, Verified, verify_chain

__all__ = ["ARCHIVE_FORMAT", "Archive", "ArchiveError", "verify_archive"]

ARCHIVE_FORMAT: Final = "consignment/log-archive/v1"
_KEYS: Final = frozenset(
    {"format", "escrow", "anchor", "ca", "signers", "certificates", "crl", "entries", "heads"}
)


class ArchiveError(BrokerError):
    """The file is not a notary archive this program can read."""


@dataclass(frozen=True)
class Archive:
    escrow: str
    #: The `prev` of the first entry (the genesis value when it is entry 1).
    anchor: str
    ca: x509.Certificate
    #: Escrow signing certificates (the heads' signers).
    signers: tuple[x509.Certificate, ...]
    #: Certificates of the parties whose requests the entries hold.
    certificates: tuple[x509.Certificate, ...]
    crl: x509.CertificateRevocationList
    entries: tuple[bytes, ...]
    heads: tuple[SignedHead, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ARCHIVE_FORMAT,
            "escrow": self.escrow,
            "anchor": self.anchor,
            "ca": to_pem(self.ca),
            "signers": [to_pem(c) for c in self.signers],
            "certificates": [to_pem(c) for c in self.certificates],
            "crl": self.crl.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "entries": [json.loads(e) for e in self.entries],
            "heads": [h.to_json() for h in self.heads],
        }

    def dumps(self) -> bytes:
        """The archive file: JSON, one entry per line for people and diff tools."""
        data = self.to_json()
        entries = data.pop("entries")
        head = json.dumps(data, indent=1, sort_keys=True)[:-2]
        lines = ",\n  ".join(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in entries)
        return f'{head},\n "entries": [\n  {lines}\n ]\n}}\n'.encode()

    @classmethod
    def loads(cls, data: bytes) -> Archive:
        """Parse an archive file; `ArchiveError` if it is not one."""
        try:
            value = json.loads(data)
            if not isinstance(value, dict) or set(value) != _KEYS:
                raise ValueError(f"an archive has exactly the fields {sorted(_KEYS)}")
            if value["format"] != ARCHIVE_FORMAT:
                raise ValueError(f"unknown archive format {value['format']!r}")
            check_name(value["escrow"], "escrow name")
            entries = tuple(Entry.from_json(e).encode() for e in value["entries"])
            return cls(
                escrow=value["escrow"],
                anchor=str(value["anchor"]),
                ca=_cert(value["ca"]),
                signers=tuple(_cert(c) for c in value["signers"]),
                certificates=tuple(_cert(c) for c in value["certificates"]),
                crl=load_crl(str(value["crl"]).encode("ascii")),
                entries=entries,
                heads=tuple(SignedHead.from_json(h) for h in value["heads"]),
            )
        except (ValueError, TypeError, KeyError, BrokerError) as exc:
            why = exc.message if isinstance(exc, BrokerError) else str(exc)
            raise ArchiveError(
                f"not a notary archive: {why}",
                "give the file `consign escrow log export` wrote, unmodified",
            ) from None


def _cert(pem: object) -> x509.Certificate:
    if not isinstance(pem, str):
        raise ValueError("certificates are PEM strings")
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _head_keys(archive: Archive) -> dict[str, Ed25519PublicKey]:
    """The signers whose certificates the CA issued to the escrow itself, checked
    at the time of each head they signed."""
    keys: dict[str, Ed25519PublicKey] = {}
    times = {h.signer: h.head.signed_at for h in archive.heads}
    for cert in archive.signers:
        fp = fingerprint(cert)
        if fp not in times:
            continue
        at = datetime.fromtimestamp(times[fp], UTC)
        try:
            keys[fp] = check_signing_certificate(
                cert,
                ca=archive.ca,
                crl=archive.crl,
                now=at,
                expected_name=archive.escrow,
                escrow=True,
                require_current_crl=False,
            )
        except CertificateRejected as exc:
            message = f"a head signer's certificate is not valid: {exc.message}"
            raise LogBroken(None, message) from None
    return keys


def verify_archive(
    archive: Archive, *, ca: x509.Certificate | None = None, escrow: str | None = None
) -> Verified:
    """Check `archive` on its own. With `ca` (the escrow CA the verifier trusts)
    or `escrow` (its name), an archive of any other escrow is refused. Raises
    `LogBroken` naming the first bad entry (None: the archive as a whole)."""
    if ca is not None and fingerprint(ca) != fingerprint(archive.ca):
        raise LogBroken(
            None,
            f"the archive is from another escrow (CA {fingerprint(archive.ca)[:16]}..., "
            f"not {fingerprint(ca)[:16]}...)",
            "verify it against the CA of the escrow it claims to come from",
        )
    if escrow is not None and escrow != archive.escrow:
        raise LogBroken(
            None,
            f"the archive is from escrow {archive.escrow!r}, not {escrow!r}",
            "verify it against the escrow it claims to come from",
        )
    if not archive.entries:
        raise LogBroken(None, "the archive holds no entries")
    starts_at_one = Entry.decode(archive.entries[0]).seq == 1
    return verify_chain(
        archive.entries,
        escrow=archive.escrow,
        heads=archive.heads,
        keys=_head_keys(archive),
        # From entry 1 the chain starts at the escrow's genesis value, whatever
        # the archive says; later, at the anchor the final head vouches for.
        anchor=None if starts_at_one else archive.anchor,
        require_head=True,
    )


def entries_of(archive: Archive) -> Sequence[Entry]:
    return [Entry.decode(e) for e in archive.entries]

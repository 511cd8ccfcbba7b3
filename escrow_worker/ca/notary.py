"""The escrow's notary: signing heads of its transaction log, verifying the log
in its store, and exporting notary archives (docs/log.md).

`sign_head` signs the current head with the escrow's signing key and keeps it
(the workers' sweep does it at intervals, when the log grew; the operator on
demand). `verify_log` checks every entry and every head in the store, page by
page. `export_archive` builds a self-contained `broker.notary.Archive` for a
range of entries, signing a head at the range's end if none is there. This
module must never hold the escrow passphrase beyond the call that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.notary import Archive
from broker.pki.profile import Role, fingerprint
from broker.txlog import Entry, Head, LogBroken, SignedHead, Verified, sign_head, verify_chain
from escrow_worker.ca import directory
from escrow_worker.errors import EscrowError
from escrow_worker.state import txlog
from escrow_worker.state.base import Store, Tx

__all__ = ["HeadSigner", "export_archive", "sign_current_head", "verify_log"]

#: Entries checked per store transaction while verifying.
PAGE: Final = 5000


@dataclass(frozen=True)
class HeadSigner:
    """What signs heads: the escrow's name, signing key and its certificate."""

    escrow: str
    key: Ed25519PrivateKey
    certificate: x509.Certificate

    def __repr__(self) -> str:  # never the key
        return f"<HeadSigner {self.escrow}>"

    def sign(self, size: int, hash_: str, at: int) -> SignedHead:
        return sign_head(
            Head(self.escrow, size, hash_, at), self.key, fingerprint(self.certificate)
        )


async def sign_head_in(
    tx: Tx, signer: HeadSigner, *, now: datetime, only_if_grown: bool = False
) -> SignedHead | None:
    """Sign and keep the current head (None: the log is empty, or with
    `only_if_grown` the latest signed head is current already)."""
    current = await txlog.head(tx)
    if current is None:
        return None
    if only_if_grown:
        latest = await txlog.latest_head(tx)
        if latest is not None and latest.head.size >= current[0]:
            return None
    signed = signer.sign(current[0], current[1], int(now.timestamp()))
    await txlog.add_head(tx, signed)
    return signed


async def sign_current_head(
    store: Store, signer: HeadSigner, *, now: datetime, only_if_grown: bool = False
) -> SignedHead | None:
    async def job(tx: Tx) -> SignedHead | None:
        return await sign_head_in(tx, signer, now=now, only_if_grown=only_if_grown)

    return await store.run(job)


async def _signer_keys(tx: Tx, escrow: str, ca: x509.Certificate) -> dict[str, Ed25519PublicKey]:
    """The escrow's signing keys, by certificate fingerprint: those the CA issued."""
    user = await directory.get_user(tx, escrow)
    keys: dict[str, Ed25519PublicKey] = {}
    for record in () if user is None else user.certificates:
        if record.role is not Role.SIGNING:
            continue
        cert = record.certificate
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):  # not the CA's
            continue
        public = cert.public_key()
        if isinstance(public, Ed25519PublicKey):
            keys[record.fingerprint] = public
    return keys


async def verify_log(store: Store, escrow: str, ca: x509.Certificate) -> Verified:
    """Check the whole log in the store and every signed head; raise `LogBroken`
    naming the first bad entry."""

    async def page(tx: Tx, first: int) -> tuple[list[bytes], list[str]]:
        rows = await tx.fetchall(
            "SELECT entry, hash FROM log_entries WHERE seq >= ? ORDER BY seq LIMIT ?",
            (first, PAGE),
        )
        return [bytes(r[0]) for r in rows], [str(r[1]) for r in rows]

    async def setup(tx: Tx) -> tuple[list[SignedHead], dict[str, Ed25519PublicKey], int | None]:
        heads = await txlog.heads(tx)
        top = await tx.fetchval("SELECT max(seq) FROM log_entries")
        return heads, await _signer_keys(tx, escrow, ca), None if top is None else int(top)

    heads, keys, top = await store.run(setup)
    if top is None:
        raise LogBroken(None, "the log holds no entries")
    first, anchor, result = 1, None, None
    while True:
        encoded, claimed = await store.run(lambda tx, f=first: page(tx, f))  # type: ignore[misc]
        if not encoded:
            break
        last_seq = Entry.decode(encoded[-1]).seq if _decodes(encoded[-1]) else None
        end = last_seq if last_seq is not None else first + len(encoded) - 1
        final = end >= top
        in_page = [h for h in heads if h.head.size >= first and (final or h.head.size <= end)]
        result = verify_chain(
            encoded, escrow=escrow, heads=in_page, keys=keys, anchor=anchor, claimed=claimed
        )
        if final:
            break
        first, anchor = result.last + 1, result.head
    assert result is not None
    signed = max((h.head.size for h in heads), default=None)
    return Verified(1, result.last, result.head, signed)


def _decodes(data: bytes) -> bool:
    try:
        Entry.decode(data)
    except ValueError:
        return False
    return True


async def export_archive(
    store: Store,
    signer: HeadSigner,
    ca: x509.Certificate,
    *,
    first: int,
    last: int | None,
    now: datetime,
) -> Archive:
    """A notary archive of entries `first`..`last` (default: to the current end)."""

    async def job(tx: Tx) -> Archive:
        current = await txlog.head(tx)
        if current is None:
            raise EscrowError("the transaction log is empty: nothing to export", None)
        end = current[0] if last is None else min(last, current[0])
        if first < 1 or first > end:
            raise EscrowError(
                f"no entries {first}..{end} in the log (it holds 1..{current[0]})",
                "choose --from and --to inside the log (see `consign escrow log head`)",
            )
        encoded = await txlog.entries(tx, first, end)
        entries = [Entry.decode(e) for e in encoded]
        heads = [h for h in await txlog.heads(tx, first, end)]
        if not any(h.head.size == end for h in heads):
            signed = signer.sign(end, entries[-1].hash, int(now.timestamp()))
            await txlog.add_head(tx, signed)
            heads.append(signed)
        signer_fps = {h.signer for h in heads}
        signers = [
            c.certificate
            for c in await _escrow_certificates(tx, signer.escrow)
            if c.fingerprint in signer_fps
        ]
        party_fps = sorted({str(e.data["certificate"]) for e in entries if "certificate" in e.data})
        certificates = []
        for fp in party_fps:
            record = await directory.certificate_by_fingerprint(tx, fp)
            if record is not None:
                certificates.append(record.certificate)
        return Archive(
            escrow=signer.escrow,
            anchor=entries[0].prev,
            ca=ca,
            signers=tuple(signers),
            certificates=tuple(certificates),
            crl=await directory.current_crl(tx),
            entries=tuple(encoded),
            heads=tuple(heads),
        )

    return await store.run(job)


async def _escrow_certificates(tx: Tx, escrow: str) -> list[directory.CertificateRecord]:
    user = await directory.get_user(tx, escrow)
    return [] if user is None else [c for c in user.certificates if c.role is Role.SIGNING]

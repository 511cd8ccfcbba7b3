"""Write the machine-readable protocol documents from the models, and one example
message of each type with fixed keys and times.

    python tools/protocol_docs.py          # docs/schemas/, docs/asyncapi.json, docs/examples/
    python tools/protocol_docs.py --check  # exit 1 if a committed file differs

Everything is reproducible byte for byte: keys come from fixed seeds, times,
request ids and nonces are fixed, certificate serials count from 1, and HPKE's
ephemeral keys are fixed too (RFC 9180 base mode written out below, checked
against `cryptography`'s HPKE, which always draws its own). The example keys are
published: never use them for anything else. tests/e2e/test_protocol_documents.py
fails when a committed file differs from what this writes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from broker.asyncapi import asyncapi_document
from broker.attest import Statement, StatementKind, sign_statement
from broker.canonical import b64, canonical_json
from broker.deposit import (
    ControlAttributes,
    Deposit,
    Mode,
    Policy,
    ReceiverAttributes,
    ReceiverSpec,
)
from broker.envelope import new_envelope, sign_envelope
from broker.hpke import DEPOSIT_INFO, RELEASE_INFO
from broker.messages import (
    AgreementBody,
    AgreementReplyBody,
    BatchBody,
    BatchItem,
    BatchKind,
    BatchReplyBody,
    BatchResult,
    ChunkBody,
    CosignBody,
    CosignerStatus,
    CosignReplyBody,
    DepositBody,
    DepositReceiptBody,
    ErrorCode,
    EventBody,
    EventKind,
    HistoryBody,
    HistoryEntry,
    HistoryReplyBody,
    KeyReleaseBody,
    KeyRequestBody,
    LookupBody,
    LookupReplyBody,
    MessageType,
    NotifyBody,
    ReceiptBody,
    ReceiptReplyBody,
    ReceiverStatus,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
    error_reply,
)
from broker.pki.profile import Role, build_ca_certificate, fingerprint, to_pem
from broker.schema import dumps, json_schemas
from broker.txlog import Entry
from escrow_worker.ca.authority import CertificateAuthority

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
ESCROW = "acme"
CID = "00112233445566778899aabbccddeeff"
DIGEST = hashlib.sha256(b"example consignment").hexdigest()
COMMITMENT = hashlib.sha256(b"example plaintext").hexdigest()
K2 = hashlib.sha256(b"example K2").digest()
#: Who the examples are signed by; carol co-signs (in this order: certificate serials).
PARTIES = (ESCROW, "alice", "bob", "carol")
#: The consignment of the receipt and co-signing examples.
CID2 = "ffeeddccbbaa99887766554433221100"


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"consignment protocol example: {label}".encode()).digest()


def _ed(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_seed(label))


def _x(label: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_seed(label))


def _raw(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


# -- HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 -----


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(SHA256(), length, info).derive(prk)


_KEM_ID = b"KEM\x00\x20"
_HPKE_ID = b"HPKE\x00\x20\x00\x01\x00\x03"


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def hpke_seal(plaintext: bytes, receiver: X25519PublicKey, info: bytes, ephemeral: str) -> bytes:
    """RFC 9180 single-shot seal with a fixed ephemeral key: enc || ct, empty aad."""
    secret_e = _x(ephemeral)
    enc = _raw(secret_e.public_key())
    dh = secret_e.exchange(receiver)
    eae_prk = _labeled_extract(_KEM_ID, b"", b"eae_prk", dh)
    shared = _labeled_expand(_KEM_ID, eae_prk, b"shared_secret", enc + _raw(receiver), 32)
    context = (
        b"\x00"
        + _labeled_extract(_HPKE_ID, b"", b"psk_id_hash", b"")
        + _labeled_extract(_HPKE_ID, b"", b"info_hash", info)
    )
    secret = _labeled_extract(_HPKE_ID, shared, b"secret", b"")
    key = _labeled_expand(_HPKE_ID, secret, b"key", context, 32)
    nonce = _labeled_expand(_HPKE_ID, secret, b"base_nonce", context, 12)
    return enc + ChaCha20Poly1305(key).encrypt(nonce, plaintext, b"")


def _checked_seal(
    plaintext: bytes, receiver: X25519PrivateKey, info: bytes, ephemeral: str
) -> bytes:
    sealed = hpke_seal(plaintext, receiver.public_key(), info, ephemeral)
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
    assert suite.decrypt(sealed, receiver, info=info) == plaintext
    return sealed


# -- the example world ----------------------------------------------------------------


class World:
    """A CA, the escrow `acme`, and alice, bob and carol, all from fixed seeds."""

    def __init__(self) -> None:
        serials = iter(range(1, 100))
        with mock.patch.object(x509, "random_serial_number", side_effect=lambda: next(serials)):
            issued = T0 - timedelta(days=1)
            ca_key = _ed("ca")
            self.ca = CertificateAuthority(ca_key, build_ca_certificate(ca_key, ESCROW, issued))
            self.signing = {n: _ed(f"{n} signing") for n in PARTIES}
            self.encryption = {n: _x(f"{n} encryption") for n in PARTIES}
            self.certs: dict[tuple[str, Role], x509.Certificate] = {}
            for name in PARTIES:
                for role, key in (
                    (Role.SIGNING, self.signing[name].public_key()),
                    (Role.ENCRYPTION, self.encryption[name].public_key()),
                ):
                    self.certs[name, role] = self.ca.issue(
                        name, role, key, now=issued, days=365, escrow=name == ESCROW
                    )
            self.crl = self.ca.sign_crl([], number=1, now=issued, days=30)

    def signer(self, name: str) -> str:
        return fingerprint(self.certs[name, Role.SIGNING])

    def keys(self) -> dict[str, Any]:
        def private(key: Any) -> str:
            return b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

        parties = {
            name: {
                "signing_key": private(self.signing[name]),
                "encryption_key": private(self.encryption[name]),
                "signing_certificate": to_pem(self.certs[name, Role.SIGNING]),
                "encryption_certificate": to_pem(self.certs[name, Role.ENCRYPTION]),
                "signer": self.signer(name),
            }
            for name in PARTIES
        }
        return {
            "warning": "published example keys: never use them for anything but these examples",
            "ca_certificate": to_pem(self.ca.certificate),
            "ca_fingerprint": fingerprint(self.ca.certificate),
            "crl": b64(self.crl.public_bytes(Encoding.DER)),
            "parties": parties,
        }


def _deposit(world: World) -> Deposit:
    bob_key = _raw(world.encryption["bob"].public_key())
    policy = Policy(
        escrow=ESCROW,
        sender="alice",
        receivers=(ReceiverSpec(name="bob", encryption_key=bob_key),),
        attributes=ControlAttributes(max_releases=1),
    )
    return Deposit(
        consignment_id=CID,
        mode=Mode.SPLIT,
        policy=policy,
        policy_digest=policy.digest(),
        escrow_key=K2,
        consignment_digest=DIGEST,
        plaintext_commitment=COMMITMENT,
        consignment_size=4096,
        sealed_at=int(T0.timestamp()),
    )


def _control_policy(world: World) -> Policy:
    """bob must sign a receipt (his own attribute); carol must co-sign."""
    return Policy(
        escrow=ESCROW,
        sender="alice",
        receivers=(
            ReceiverSpec(
                name="bob",
                encryption_key=_raw(world.encryption["bob"].public_key()),
                attributes=ReceiverAttributes(receipt_required=True),
            ),
        ),
        attributes=ControlAttributes(cosigners=("carol",)),
    )


def _statement(world: World, kind: StatementKind, by: str, at: int) -> tuple[Statement, bytes]:
    said = Statement(
        kind=kind,
        consignment_id=CID2,
        consignment_digest=DIGEST,
        policy_digest=_control_policy(world).digest(),
        signer=by,
        signed_at=at,
    )
    return said, sign_statement(said, world.signing[by])


def examples(world: World) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """File name -> exact bytes, and the index describing them."""
    files: dict[str, bytes] = {}
    index: list[dict[str, Any]] = []
    deposit = _deposit(world)
    deposit_json = canonical_json(deposit.model_dump(mode="json"))
    files["deposit-plaintext.json"] = deposit_json
    t = int(T0.timestamp())
    counter = iter(range(1, 100))

    def add(
        type_: MessageType,
        body: Any,
        *,
        by: str,
        to: str,
        reply_to: str = "",
        answers: str | None = None,
        lifetime: timedelta = timedelta(minutes=10),
    ) -> str:
        n = next(counter)
        envelope = new_envelope(
            type=type_.value,
            body=body.model_dump(mode="json"),
            audience=to,
            signer=world.signer(by),
            now=T0 + timedelta(seconds=n),
            reply_to=reply_to,
            lifetime=lifetime,
            request_id=f"example{n:02d}" + "0" * 9,
            nonce=_seed(f"nonce {n}")[:16],
        )
        wire = sign_envelope(envelope, world.signing[by]).to_wire()
        name = f"{type_.value}.json"
        files[name] = wire
        request = type_ in (
            MessageType.LOOKUP,
            MessageType.DEPOSIT,
            MessageType.KEY_REQUEST,
            MessageType.REVOKE,
            MessageType.STATUS,
            MessageType.RECEIPT,
            MessageType.COSIGN,
            MessageType.AGREEMENT,
            MessageType.BATCH,
            MessageType.HISTORY,
        )
        index.append(
            {
                "file": name,
                "type": type_.value,
                "version": 1,
                "signed_by": by,
                "publish": {
                    "exchange": "" if request else "{prefix}.inbox",
                    "routing_key": "{prefix}.escrow.requests" if request else to,
                    "mandatory": True,
                    "properties": {
                        "message_id": envelope.request_id,
                        "correlation_id": answers,
                        "type": f"{type_.value}.v1",
                        "delivery_mode": 2,
                    },
                },
                "envelope": envelope.model_dump(mode="json"),
            }
        )
        return envelope.request_id

    lookup = add(
        MessageType.LOOKUP, LookupBody(name="bob"), by="alice", to=ESCROW, reply_to="alice"
    )
    add(
        MessageType.LOOKUP_REPLY,
        LookupReplyBody(
            in_reply_to=lookup,
            name="bob",
            signing_certificate=to_pem(world.certs["bob", Role.SIGNING]),
            encryption_certificate=to_pem(world.certs["bob", Role.ENCRYPTION]),
            crl=world.crl.public_bytes(Encoding.DER),
        ),
        by=ESCROW,
        to="alice",
        answers=lookup,
        lifetime=timedelta(days=30),
    )
    sealed = _checked_seal(
        deposit_json, world.encryption[ESCROW], DEPOSIT_INFO + bytes.fromhex(CID), "deposit enc"
    )
    dep = add(
        MessageType.DEPOSIT,
        DepositBody(consignment_id=CID, sealed_deposit=sealed),
        by="alice",
        to=ESCROW,
        reply_to="alice",
    )
    add(
        MessageType.DEPOSIT_RECEIPT,
        DepositReceiptBody(
            in_reply_to=dep,
            consignment_id=CID,
            sender="alice",
            deposited_at=t + 3,
            consignment_digest=DIGEST,
            plaintext_commitment=COMMITMENT,
            policy_digest=deposit.policy_digest,
            receivers=("bob",),
        ),
        by=ESCROW,
        to="alice",
        answers=dep,
        lifetime=timedelta(days=30),
    )
    add(
        MessageType.EVENT,
        EventBody(consignment_id=CID, kind=EventKind.NOTIFIED, receiver="bob", at=t + 3),
        by=ESCROW,
        to="alice",
        answers=dep,
        lifetime=timedelta(days=30),
    )
    add(
        MessageType.NOTIFY,
        NotifyBody(
            consignment_id=CID,
            sender="alice",
            escrow=ESCROW,
            deposited_at=t + 3,
            consignment_digest=DIGEST,
            consignment_size=4096,
        ),
        by=ESCROW,
        to="bob",
        answers=dep,
        lifetime=timedelta(days=30),
    )
    add(
        MessageType.CHUNK,
        ChunkBody(
            consignment_id=CID,
            index=0,
            count=1,
            total_size=19,
            consignment_digest=hashlib.sha256(b"example consignment").hexdigest(),
            data=b"example consignment",
        ),
        by="alice",
        to="bob",
        reply_to="alice",
        lifetime=timedelta(days=7),
    )
    ask = add(
        MessageType.KEY_REQUEST,
        KeyRequestBody(consignment_id=CID, consignment_digest=DIGEST),
        by="bob",
        to=ESCROW,
        reply_to="bob",
    )
    release_info = RELEASE_INFO + bytes.fromhex(CID) + deposit.policy_digest
    add(
        MessageType.KEY_RELEASE,
        KeyReleaseBody(
            in_reply_to=ask,
            consignment_id=CID,
            mode=Mode.SPLIT,
            policy_digest=deposit.policy_digest,
            sealed_key_part=_checked_seal(K2, world.encryption["bob"], release_info, "k2 enc"),
            sender="alice",
            consignment_digest=DIGEST,
            released_at=t + 8,
        ),
        by=ESCROW,
        to="bob",
        answers=ask,
        lifetime=timedelta(days=30),
    )
    revoke = add(
        MessageType.REVOKE,
        RevokeBody(consignment_id=CID, receivers=()),
        by="alice",
        to=ESCROW,
        reply_to="alice",
    )
    add(
        MessageType.REVOKE_REPLY,
        RevokeReplyBody(in_reply_to=revoke, consignment_id=CID, revoked=("bob",)),
        by=ESCROW,
        to="alice",
        answers=revoke,
        lifetime=timedelta(days=30),
    )
    status = add(
        MessageType.STATUS, StatusBody(consignment_id=CID), by="alice", to=ESCROW, reply_to="alice"
    )
    add(
        MessageType.STATUS_REPLY,
        StatusReplyBody(
            in_reply_to=status,
            consignment_id=CID,
            sender="alice",
            mode=Mode.SPLIT,
            deposited_at=t + 3,
            receivers=(
                ReceiverStatus(name="bob", notified_at=t + 3, releases=1, revoked_at=t + 10),
            ),
        ),
        by=ESCROW,
        to="alice",
        answers=status,
        lifetime=timedelta(days=30),
    )
    again = "example99000000000"  # bob's key request after the revocation (not shown)
    add(
        MessageType.ERROR,
        error_reply(
            in_reply_to=again,
            code=ErrorCode.REVOKED,
            message="the sender revoked this consignment for you",
            request_type="key-request",
            consignment_id=CID,
        ),
        by=ESCROW,
        to="bob",
        answers=again,
        lifetime=timedelta(days=30),
    )
    # Another consignment, whose policy asks bob for a receipt and carol to co-sign.
    said, signature = _statement(world, StatementKind.RECEIPT, "bob", t + 20)
    receipt = add(
        MessageType.RECEIPT,
        ReceiptBody(consignment_id=CID2, statement=said, signature=signature),
        by="bob",
        to=ESCROW,
        reply_to="bob",
    )
    add(
        MessageType.RECEIPT_REPLY,
        ReceiptReplyBody(
            in_reply_to=receipt, consignment_id=CID2, receiver="bob", recorded_at=t + 21
        ),
        by=ESCROW,
        to="bob",
        answers=receipt,
        lifetime=timedelta(days=30),
    )
    asked = add(
        MessageType.AGREEMENT,
        AgreementBody(consignment_id=CID2),
        by="carol",
        to=ESCROW,
        reply_to="carol",
    )
    policy = _control_policy(world)
    add(
        MessageType.AGREEMENT_REPLY,
        AgreementReplyBody(
            in_reply_to=asked,
            consignment_id=CID2,
            sender="alice",
            deposited_at=t + 15,
            consignment_digest=DIGEST,
            consignment_size=4096,
            policy=policy,
            policy_digest=policy.digest(),
            cosigners=(CosignerStatus(name="carol", signed_at=None),),
        ),
        by=ESCROW,
        to="carol",
        answers=asked,
        lifetime=timedelta(days=30),
    )
    said, signature = _statement(world, StatementKind.AGREEMENT, "carol", t + 24)
    cosign = add(
        MessageType.COSIGN,
        CosignBody(consignment_id=CID2, statement=said, signature=signature),
        by="carol",
        to=ESCROW,
        reply_to="carol",
    )
    add(
        MessageType.COSIGN_REPLY,
        CosignReplyBody(
            in_reply_to=cosign,
            consignment_id=CID2,
            cosigner="carol",
            recorded_at=t + 25,
            cosigners=(CosignerStatus(name="carol", signed_at=t + 25),),
        ),
        by=ESCROW,
        to="carol",
        answers=cosign,
        lifetime=timedelta(days=30),
    )
    # Bob asks for two key parts in one batch: the first item is released, the
    # second refused until carol has co-signed.
    items = (
        BatchItem(id="exampleitem1" + "0" * 8, body={"consignment_digest": DIGEST,
                                                     "consignment_id": CID}),
        BatchItem(id="exampleitem2" + "0" * 8, body={"consignment_digest": DIGEST,
                                                     "consignment_id": CID2}),
    )  # fmt: skip
    batch = add(
        MessageType.BATCH,
        BatchBody(kind=BatchKind.KEY_REQUEST, items=items),
        by="bob",
        to=ESCROW,
        reply_to="bob",
    )
    released = KeyReleaseBody(
        in_reply_to=items[0].id,
        consignment_id=CID,
        mode=Mode.SPLIT,
        policy_digest=deposit.policy_digest,
        sealed_key_part=_checked_seal(K2, world.encryption["bob"], release_info, "k2 enc batch"),
        sender="alice",
        consignment_digest=DIGEST,
        released_at=t + 27,
    )
    pending = error_reply(
        in_reply_to=items[1].id,
        code=ErrorCode.COSIGNATURES_PENDING,
        message="not every co-signer has signed yet: carol",
        request_type="key-request",
        consignment_id=CID2,
    )
    add(
        MessageType.BATCH_REPLY,
        BatchReplyBody(
            in_reply_to=batch,
            kind=BatchKind.KEY_REQUEST,
            results=(
                BatchResult(
                    id=items[0].id, type="key-release", body=released.model_dump(mode="json")
                ),
                BatchResult(id=items[1].id, type="error", body=pending.model_dump(mode="json")),
            ),
        ),
        by=ESCROW,
        to="bob",
        answers=batch,
        lifetime=timedelta(days=30),
    )
    history = add(
        MessageType.HISTORY, HistoryBody(consignment_id=CID), by="bob", to=ESCROW, reply_to="bob"
    )
    # The first entry about CID in an example log (docs/log.md): its deposit.
    logged = Entry(
        seq=41,
        at=t + 3,
        kind="request",
        prev=hashlib.sha256(b"example entry 40").hexdigest(),
        data={"request_id": "example03" + "0" * 9, "type": "deposit", "signer": "alice",
              "decision": "ok"},
        consignment=CID,
        parties=("alice", "bob"),
    )  # fmt: skip
    add(
        MessageType.HISTORY_REPLY,
        HistoryReplyBody(
            in_reply_to=history,
            consignment_id=CID,
            entries=(HistoryEntry(entry=logged.to_json(), hash=logged.hash),),
            complete=True,
            log_size=57,
            log_head=hashlib.sha256(b"example entry 57").hexdigest(),
        ),
        by=ESCROW,
        to="bob",
        answers=history,
        lifetime=timedelta(days=30),
    )
    return files, index


# -- the field reference in docs/protocol.md -----------------------------------------

BEGIN, END = "<!-- fields: generated by tools/protocol_docs.py -->", "<!-- fields: end -->"


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        target = defs[name]
        if "enum" in target:
            return " \\| ".join(f"`{v}`" for v in target["enum"])
        return f"object `{name}`"
    if "anyOf" in node:
        return " or ".join(_type(n, defs) for n in node["anyOf"])
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    kind = node.get("type", "any")
    if kind == "array":
        return f"array of {_type(node.get('items', {}), defs)}"
    if kind == "object" and node.get("additionalProperties") is True:
        return "object"  # any JSON object (e.g. a log entry, docs/log.md)
    if kind == "object" and "additionalProperties" in node:
        return f"object of {_type(node['additionalProperties'], defs)}"
    if kind == "string" and node.get("contentEncoding") == "base64":
        return "base64"
    if kind == "string" and node.get("pattern") in _PATTERNS:
        return _PATTERNS[node["pattern"]]
    return str(kind)


_PATTERNS = {
    "^[0-9a-f]{32}$": "hex, 16 bytes (32 digits)",
    "^[0-9a-f]{64}$": "hex, 32 bytes (64 digits)",
    "^[A-Za-z0-9_-]{16,64}$": "request id",
    "^[a-z0-9](?:[a-z0-9._@+-]{0,62}[a-z0-9])?$": "name",
}


def _limits(node: dict[str, Any]) -> str:
    for inner in node.get("anyOf", []):
        if inner.get("type") != "null":
            node = {**inner, **{k: v for k, v in node.items() if k != "anyOf"}}
    out = []
    if node.get("contentEncoding") == "base64" and "maxLength" in node:
        out.append(f"at most {node['maxLength']} characters")
    elif "minLength" in node or "maxLength" in node:
        out.append(f"{node.get('minLength', 0)}-{node.get('maxLength', '')} characters")
    if "minimum" in node:
        out.append(f">= {node['minimum']}")
    if "exclusiveMinimum" in node:
        out.append(f"> {node['exclusiveMinimum']}")
    if "maximum" in node:
        out.append(f"<= {node['maximum']}")
    if "minItems" in node or "maxItems" in node:
        out.append(f"{node.get('minItems', 0)}-{node.get('maxItems', '')} items")
    if "pattern" in node and node["pattern"] not in _PATTERNS and "contentEncoding" not in node:
        out.append(f"`{node['pattern']}`")
    return ", ".join(out)


def _table(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    rows = ["| field | type | limits | required |", "| --- | --- | --- | --- |"]
    required = set(schema.get("required", []))
    for name, node in sorted(schema["properties"].items()):
        need = "yes" if name in required else f"no (default `{json.dumps(node.get('default'))}`)"
        if name not in required and "default" not in node:
            need = "no (absent when not given)"
        rows.append(f"| `{name}` | {_type(node, defs)} | {_limits(node)} | {need} |")
    return rows


def field_reference() -> str:
    """The generated part of docs/protocol.md: every body's and the deposit's fields."""
    schemas = json_schemas()
    lines = [BEGIN, ""]
    order = [body for body in schemas if body.endswith(".v1.schema.json")] + ["deposit.schema.json"]
    for name in order:
        schema = schemas[name]
        defs = schema.get("$defs", {})
        lines += [
            f"#### {schema['title']}",
            "",
            f"Schema: `docs/schemas/{name}`. " + " ".join(schema.get("description", "").split()),
            "",
        ]
        lines += _table(schema, defs)
        for def_name, node in sorted(defs.items()):
            if "properties" in node:
                lines += ["", f"Object `{def_name}`:", "", *_table(node, defs)]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _with_reference(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + field_reference() + text[end:]


def documents() -> dict[str, bytes]:
    """Path under docs/ -> exact bytes, for everything this tool writes."""
    out: dict[str, bytes] = {}
    for name, schema in json_schemas().items():
        out[f"schemas/{name}"] = dumps(schema).encode()
    out["asyncapi.json"] = dumps(asyncapi_document()).encode()
    world = World()
    files, index = examples(world)
    for name, data in files.items():
        out[f"examples/{name}"] = data
    listed = {"time_zero": int(T0.timestamp()), "examples": index}
    out["examples/index.json"] = dumps(listed).encode()
    out["examples/keys.json"] = dumps(world.keys()).encode()
    protocol = (DOCS / "protocol.md").read_text()
    if BEGIN in protocol:
        out["protocol.md"] = _with_reference(protocol).encode()
    assert all(not k.startswith("/") for k in out)
    return out


def differences(docs: Path = DOCS) -> list[str]:
    """The generated files that are missing or differ under `docs`, and the
    committed ones under its generated folders that would not be written."""
    wanted = documents()
    found = [name for name, data in wanted.items() if _read(docs / name) != data]
    for folder in ("schemas", "examples"):
        for path in sorted((docs / folder).glob("*")):
            if f"{folder}/{path.name}" not in wanted:
                found.append(f"{folder}/{path.name} (not generated)")
    return found


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def write(docs: Path = DOCS) -> None:
    for name, data in documents().items():
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        stale = differences()
        for name in stale:
            print(f"docs/{name} differs from the models; run python tools/protocol_docs.py")
        return 1 if stale else 0
    if argv[1:]:
        print(__doc__)
        return 2
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""What the vector generators share: the collector that turns a consignment and
the keys to open it into a vector, and the edits that damage or forge one.

Not a test module: `generate.py`, `rules.py` and `keyschedule.py` use it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from broker.deposit import KeyRelease
from client.format.header import (
    CHUNK_SIZE,
    TAG_SIZE,
    TRAILER_SIGNATURE_LABEL,
    TRAILER_SIZE,
    Header,
    parse_header,
)
from tests.client.consign_helpers import ALICE, Party

SOURCE = "tests/vectors/generate.py"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw_private(key: Any) -> bytes:
    return bytes(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def raw_public(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


@dataclass
class Vectors:
    """Vectors by name, each a JSON-ready dict."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        description: str,
        spec: str,
        expect: str,
        consignment: bytes,
        receiver: Party,
        release: KeyRelease,
        files: dict[str, bytes] | None = None,
        sender: Party = ALICE,
    ) -> None:
        assert name not in self.found, name
        vector: dict[str, Any] = {
            "description": description,
            "spec": spec,
            "expect": expect,
            "source": SOURCE,
            "receiver_private_key": b64(raw_private(receiver.encryption)),
            "sender_public_key": b64(raw_public(sender.signing.public_key())),
            "release": json.loads(release.model_dump_json()),
            "consignment": b64(consignment),
        }
        if files is not None:
            vector["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
        self.found[name] = vector

    def values(self, name: str, description: str, spec: str, values: dict[str, Any]) -> None:
        assert name not in self.found, name
        self.found[name] = {
            "description": description,
            "spec": spec,
            "expect": "values",
            "source": SOURCE,
            **values,
        }

    def write(self, out: Path) -> None:
        for old in out.glob("*.json"):
            old.unlink()
        for name, vector in sorted(self.found.items()):
            (out / f"{name}.json").write_text(json.dumps(vector, indent=1, sort_keys=True) + "\n")


def flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x01
    return bytes(out)


def resign(sealed: bytes, edit: Callable[[Header], Header], signer: Party = ALICE) -> bytes:
    """The header edited and signed again (the MAC and trailer left as they were)."""
    header = parse_header(io.BytesIO(sealed))
    edited = edit(header)
    edited = dataclasses.replace(edited, signature=signer.signing.sign(edited.signed_input()))
    return bytes(edited.serialize() + sealed[len(header.serialize()) :])


def resign_all(
    sealed: bytes,
    edit: Callable[[Header], Header] = lambda h: h,
    commitment: Callable[[bytes], bytes] = lambda c: c,
    signer: Party = ALICE,
) -> bytes:
    """The header and the trailer's commitment edited, and both signatures made
    again: a file the sender validly signed in which only what the edits broke
    (the header MAC, the plaintext commitment) is wrong."""
    header = parse_header(io.BytesIO(sealed))
    head = dataclasses.replace(
        edit(header), signature=signer.signing.sign(edit(header).signed_input())
    ).serialize()
    body = sealed[len(header.serialize()) : -TRAILER_SIZE]
    commit = commitment(sealed[-TRAILER_SIZE:][:32])
    digest = blake3.blake3(head + body).digest()
    return head + body + commit + signer.signing.sign(TRAILER_SIGNATURE_LABEL + digest + commit)


def chunks(sealed: bytes) -> tuple[bytes, list[bytes], bytes]:
    head = parse_header(io.BytesIO(sealed)).serialize()
    body = sealed[len(head) : -TRAILER_SIZE]
    step = CHUNK_SIZE + TAG_SIZE
    return head, [body[i : i + step] for i in range(0, len(body), step)], sealed[-TRAILER_SIZE:]


def raw_manifest(names: list[str], size: int = 1) -> bytes:
    """A manifest of `names`, each of `size` bytes, in canonical form (whatever
    the names), with its length prefix."""
    body = json.dumps(
        {"files": [{"mode": 420, "name": n, "size": size} for n in names]},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    ).encode("utf-8", "surrogatepass")
    return len(body).to_bytes(4, "big") + body


def prefixed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body

"""Generate the consignment test vectors in this directory.

Run from the repository root:  python -m tests.vectors.generate

Each vector is a JSON file: the consignment bytes, the keys a receiver uses, the
escrow's KeyRelease, and the expected outcome ("success" with the files and their
SHA-256, "open_error", or "unsafe_path"). Keys come from fixed seeds; HPKE draws
its own ephemeral randomness, so regenerating changes the bytes, never the outcomes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.deposit import ControlAttributes, Deposit, KeyRelease, Mode
from client.format.header import CHUNK_SIZE, TAG_SIZE, TRAILER_SIZE, parse_header
from tests.client.consign_helpers import ALICE, RECEIVERS, party, seal_bytes, seal_raw_manifest

HERE = Path(__file__).parent
BOB, CAROL, DAVE = RECEIVERS[:3]
MALLORY = party("mallory")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw_private(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return bytes(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def _write(
    name: str,
    description: str,
    expect: str,
    consignment: bytes,
    receiver: Any,
    release: KeyRelease,
    files: dict[str, bytes] | None = None,
    sender: Any = ALICE,
) -> None:
    vector: dict[str, Any] = {
        "description": description,
        "expect": expect,
        "source": "tests/vectors/generate.py",
        "receiver_private_key": _b64(_raw_private(receiver.encryption)),
        "sender_public_key": _b64(_raw_public(sender.signing.public_key())),
        "release": json.loads(release.model_dump_json()),
        "consignment": _b64(consignment),
    }
    if files is not None:
        vector["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    (HERE / f"{name}.json").write_text(json.dumps(vector, indent=1, sort_keys=True) + "\n")


def _resign(sealed: bytes, edit: Callable[[Any], Any], signer: Any = ALICE) -> bytes:
    header = parse_header(io.BytesIO(sealed))
    edited = edit(header)
    edited = dataclasses.replace(edited, signature=signer.signing.sign(edited.signed_input()))
    return bytes(edited.serialize() + sealed[len(header.serialize()) :])


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes], bytes]:
    head = parse_header(io.BytesIO(sealed)).serialize()
    body = sealed[len(head) : -TRAILER_SIZE]
    step = CHUNK_SIZE + TAG_SIZE
    return head, [body[i : i + step] for i in range(0, len(body), step)], sealed[-TRAILER_SIZE:]


def success_vectors() -> tuple[bytes, Deposit]:
    one = {"hello.txt": b"hello, consignment\n"}
    sealed, dep = seal_bytes(one, [BOB])
    _write(
        "success_split_one_receiver",
        "split mode, one receiver",
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        one,
    )

    sealed, dep = seal_bytes(one, [BOB, CAROL, DAVE])
    _write(
        "success_split_third_of_three",
        "split mode, the third of three receivers opens",
        "success",
        sealed,
        DAVE,
        dep.release_for("dave"),
        one,
    )

    sealed, dep = seal_bytes(one, [BOB, CAROL], Mode.ESCROWED)
    _write(
        "success_escrowed_two_receivers",
        "escrowed-wrap mode, second receiver opens",
        "success",
        sealed,
        CAROL,
        dep.release_for("carol"),
        one,
    )

    many = {"a/one.txt": b"1", "a/b/two.bin": os.urandom(1000), "empty": b"", "z.txt": b"last"}
    sealed, dep = seal_bytes(many, [BOB])
    _write(
        "success_many_files",
        "several files, nested names, an empty file",
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        many,
    )

    me = {"diary.txt": b"note to self"}
    sealed, dep = seal_bytes(me, [ALICE], sender=ALICE)
    _write(
        "success_virtual_safe",
        "virtual safe: the sender is its only receiver",
        "success",
        sealed,
        ALICE,
        dep.release_for("alice"),
        me,
    )

    big = {"f": bytes(range(256)) * (2 * CHUNK_SIZE // 256)}
    sealed, dep = seal_bytes(big, [BOB], attributes=ControlAttributes(max_releases=1))
    _write(
        "success_three_chunks",
        "payload of three chunks, the last one short",
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        big,
    )
    return sealed, dep


def failure_vectors(big: bytes, big_dep: Deposit) -> None:
    release = big_dep.release_for("bob")
    head, chunks, trailer = _chunks(big)
    damaged = {
        "truncated_mid_chunk": ("cut inside the second chunk", big[: len(head) + CHUNK_SIZE + 100]),
        "truncated_at_chunk_boundary": (
            "last chunk and trailer missing",
            head + chunks[0] + chunks[1],
        ),
        "extended_chunk": (
            "a chunk repeated at the end",
            head + b"".join(chunks) + chunks[-1] + trailer,
        ),
        "reordered_chunks": (
            "first two chunks swapped",
            head + chunks[1] + chunks[0] + chunks[2] + trailer,
        ),
        "dropped_last_chunk": (
            "the short last chunk dropped",
            head + chunks[0] + chunks[1] + trailer,
        ),
        "bitflip_payload": (
            "one bit of the second chunk flipped",
            _flip(big, len(head) + CHUNK_SIZE + 500),
        ),
    }
    for name, (description, data) in damaged.items():
        _write(f"fail_{name}", description, "open_error", data, BOB, release)

    small = {"f": b"secret"}
    sealed, dep = seal_bytes(small, [BOB])
    rel = dep.release_for("bob")
    damaged = {
        "truncated_trailer": ("one byte of the trailer missing", sealed[:-1]),
        "extended_byte": ("one byte appended", sealed + b"\n"),
        "bitflip_header": (
            "one bit of the escrow address flipped",
            sealed.replace(b"escrow.example", b"escrow.exbmple", 1),
        ),
        "bitflip_trailer": (
            "one bit of the trailer signature flipped",
            _flip(sealed, len(sealed) - 3),
        ),
        "unknown_version": (
            "version line says v2",
            sealed.replace(b"consignment/v1", b"consignment/v2", 1),
        ),
    }
    for name, (description, data) in damaged.items():
        _write(f"fail_{name}", description, "open_error", data, BOB, rel)
    _write(
        "fail_wrong_receiver_key",
        "opened with a key it was not sealed to",
        "open_error",
        sealed,
        CAROL,
        rel,
    )
    _, other = seal_bytes(small, [BOB])
    _write(
        "fail_wrong_k2",
        "the escrow part of another consignment",
        "open_error",
        sealed,
        BOB,
        rel.model_copy(update={"key_part": other.escrow_key}),
    )
    swapped = dep.policy.model_copy(update={"attributes": ControlAttributes(max_releases=7)})
    _write(
        "fail_policy_swapped_at_escrow",
        "escrow reports another policy digest",
        "open_error",
        sealed,
        BOB,
        rel.model_copy(update={"policy_digest": swapped.digest()}),
    )
    _write(
        "fail_policy_swapped_in_file",
        "policy digest changed and header re-signed",
        "open_error",
        _resign(sealed, lambda h: dataclasses.replace(h, policy_digest=swapped.digest())),
        BOB,
        rel,
    )
    _write(
        "fail_forged_signature",
        "header signed by another key",
        "open_error",
        _resign(sealed, lambda h: h, signer=MALLORY),
        BOB,
        rel,
    )
    two, two_dep = seal_bytes(small, [BOB, CAROL])
    relabel = _resign(
        two,
        lambda h: dataclasses.replace(
            h, stanzas=(dataclasses.replace(h.stanzas[0], key_id=h.stanzas[1].key_id),)
        ),
    )
    _write(
        "fail_stanza_of_another_receiver",
        "Bob's stanza relabelled for Carol",
        "open_error",
        relabel,
        CAROL,
        two_dep.release_for("carol"),
    )
    esc, esc_dep = seal_bytes(small, [BOB, CAROL], Mode.ESCROWED)
    _write(
        "fail_escrowed_other_receivers_wrap",
        "escrowed mode, Carol given Bob's wrapped K3",
        "open_error",
        esc,
        CAROL,
        esc_dep.release_for("bob"),
    )

    body = b'{"files": [{"mode": 420, "name": "f", "size": 1}]}'
    sealed, dep = seal_raw_manifest(len(body).to_bytes(4, "big") + body, b"x", BOB)
    _write(
        "fail_noncanonical_manifest",
        "manifest JSON with spaces",
        "open_error",
        sealed,
        BOB,
        dep.release_for("bob"),
    )

    for name, names in {
        "dotdot": ["../escape"],
        "absolute": ["/etc/passwd"],
        "duplicate": ["a", "a"],
    }.items():
        manifest = json.dumps(
            {"files": [{"mode": 420, "name": n, "size": 1} for n in names]},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        sealed, dep = seal_raw_manifest(
            len(manifest).to_bytes(4, "big") + manifest, b"x" * len(names), BOB
        )
        _write(
            f"unsafe_{name}",
            f"file names {names!r}",
            "unsafe_path",
            sealed,
            BOB,
            dep.release_for("bob"),
        )


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x01
    return bytes(out)


def main() -> None:
    for old in HERE.glob("*.json"):
        old.unlink()
    big, dep = success_vectors()
    failure_vectors(big, dep)
    print(f"wrote {len(list(HERE.glob('*.json')))} vectors to {HERE}")


if __name__ == "__main__":
    main()

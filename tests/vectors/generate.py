"""Generate the consignment test vectors in this directory.

Run from the repository root:  python -m tests.vectors.generate

Each vector is a JSON file: the consignment bytes, the keys a receiver uses, the
escrow's release, the expected outcome ("success" with the files and their
SHA-256, "open_error", or "unsafe_path") and the section of docs/format.md it
exercises; `keyschedule.json` holds the key schedule's values ("values").
Keys come from fixed seeds; HPKE draws its own ephemeral randomness, so
regenerating changes the bytes, never the outcomes. This module makes the
vectors of sealing, damage and forgery; `rules.py` those of the name, manifest,
binding and chunk rules; `keyschedule.py` the values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

from broker.deposit import ControlAttributes, Deposit, Mode
from client.format.header import CHUNK_SIZE
from tests.client.consign_helpers import ALICE, RECEIVERS, party, seal_bytes, seal_raw_manifest
from tests.vectors import keyschedule, rules
from tests.vectors.common import (
    Vectors,
    chunks,
    flip,
    prefixed,
    raw_manifest,
    resign,
    resign_all,
)

HERE = Path(__file__).parent
BOB, CAROL, DAVE = RECEIVERS[:3]
MALLORY = party("mallory")


def success_vectors(v: Vectors) -> tuple[bytes, Deposit]:
    spec = "Opening, in order"
    one = {"hello.txt": b"hello, consignment\n"}
    sealed, dep = seal_bytes(one, [BOB])
    v.add(
        "success_split_one_receiver",
        "split mode, one receiver",
        spec,
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        one,
    )
    sealed, dep = seal_bytes(one, [BOB, CAROL, DAVE])
    v.add(
        "success_split_third_of_three",
        "split mode, the third of three receivers opens",
        spec,
        "success",
        sealed,
        DAVE,
        dep.release_for("dave"),
        one,
    )
    sealed, dep = seal_bytes(one, [BOB, CAROL], Mode.ESCROWED)
    v.add(
        "success_escrowed_two_receivers",
        "escrowed-wrap mode, second receiver opens",
        spec,
        "success",
        sealed,
        CAROL,
        dep.release_for("carol"),
        one,
    )
    two = hashlib.shake_256(b"two.bin").digest(1000)
    many = {"a/one.txt": b"1", "a/b/two.bin": two, "empty": b"", "z.txt": b"last"}
    sealed, dep = seal_bytes(many, [BOB])
    v.add(
        "success_many_files",
        "several files, nested names, an empty file",
        spec,
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        many,
    )
    me = {"diary.txt": b"note to self"}
    sealed, dep = seal_bytes(me, [ALICE], sender=ALICE)
    v.add(
        "success_virtual_safe",
        "virtual safe: the sender is its only receiver",
        spec,
        "success",
        sealed,
        ALICE,
        dep.release_for("alice"),
        me,
    )
    big = {"f": bytes(range(256)) * (2 * CHUNK_SIZE // 256)}
    sealed, dep = seal_bytes(big, [BOB], attributes=ControlAttributes(max_releases=1))
    v.add(
        "success_three_chunks",
        "payload of three chunks, the last one short",
        "Payload",
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        big,
    )
    return sealed, dep


def damage_vectors(v: Vectors, big: bytes, big_dep: Deposit) -> None:
    release = big_dep.release_for("bob")
    head, parts, trailer = chunks(big)
    damaged = {
        "truncated_mid_chunk": ("cut inside the second chunk", big[: len(head) + CHUNK_SIZE + 100]),
        "truncated_at_chunk_boundary": (
            "last chunk and trailer missing",
            head + parts[0] + parts[1],
        ),
        "extended_chunk": (
            "a chunk repeated at the end",
            head + b"".join(parts) + parts[-1] + trailer,
        ),
        "reordered_chunks": (
            "first two chunks swapped",
            head + parts[1] + parts[0] + parts[2] + trailer,
        ),
        "dropped_last_chunk": (
            "the short last chunk dropped",
            head + parts[0] + parts[1] + trailer,
        ),
        "bitflip_payload": (
            "one bit of the second chunk flipped",
            flip(big, len(head) + CHUNK_SIZE + 500),
        ),
    }
    for name, (description, data) in damaged.items():
        v.add(f"fail_{name}", description, "Payload", "open_error", data, BOB, release)

    small = {"f": b"secret"}
    sealed, dep = seal_bytes(small, [BOB])
    rel = dep.release_for("bob")
    for name, (description, spec, data) in {
        "truncated_trailer": ("one byte of the trailer missing", "Trailer", sealed[:-1]),
        "extended_byte": ("one byte appended", "Trailer", sealed + b"\n"),
        "bitflip_header": (
            "one bit of the escrow name flipped",
            "Header",
            sealed.replace(b"escrow.example", b"escrow.exbmple", 1),
        ),
        "bitflip_trailer": (
            "one bit of the trailer signature flipped",
            "Trailer",
            flip(sealed, len(sealed) - 3),
        ),
        "unknown_version": (
            "version line says v2",
            "Header",
            sealed.replace(b"consignment/v1", b"consignment/v2", 1),
        ),
    }.items():
        v.add(f"fail_{name}", description, spec, "open_error", data, BOB, rel)
    forged_vectors(v, sealed, dep)


def forged_vectors(v: Vectors, sealed: bytes, dep: Deposit) -> None:
    rel = dep.release_for("bob")
    wrapping = "Wrapping to a receiver"
    v.add(
        "fail_wrong_receiver_key",
        "opened with a key it was not sealed to",
        wrapping,
        "open_error",
        sealed,
        CAROL,
        rel,
    )
    _, other = seal_bytes({"f": b"secret"}, [BOB])
    v.add(
        "fail_wrong_k2",
        "the escrow part of another consignment",
        "Key schedule",
        "open_error",
        sealed,
        BOB,
        rel.model_copy(update={"key_part": other.escrow_key}),
    )
    swapped = dep.policy.model_copy(update={"attributes": ControlAttributes(max_releases=7)})
    v.add(
        "fail_policy_swapped_at_escrow",
        "the escrow reports another policy digest",
        "Key schedule",
        "open_error",
        sealed,
        BOB,
        rel.model_copy(update={"policy_digest": swapped.digest()}),
    )
    v.add(
        "fail_policy_swapped_in_file",
        "policy digest changed and header re-signed (MAC left)",
        "Opening, in order",
        "open_error",
        resign(sealed, lambda h: dataclasses.replace(h, policy_digest=swapped.digest())),
        BOB,
        rel,
    )
    v.add(
        "fail_header_mac_only",
        "one bit of the header MAC flipped, header and trailer signed again",
        "Header MAC and signature",
        "open_error",
        resign_all(sealed, lambda h: dataclasses.replace(h, mac=flip(h.mac, 0))),
        BOB,
        rel,
    )
    v.add(
        "fail_commitment_only",
        "one bit of the plaintext commitment flipped, trailer signed again",
        "Trailer",
        "open_error",
        resign_all(sealed, commitment=lambda c: flip(c, 0)),
        BOB,
        rel,
    )
    v.add(
        "fail_forged_signature",
        "header signed by another key",
        "Header MAC and signature",
        "open_error",
        resign(sealed, lambda h: h, signer=MALLORY),
        BOB,
        rel,
    )
    two, two_dep = seal_bytes({"f": b"secret"}, [BOB, CAROL])
    relabel = resign(
        two,
        lambda h: dataclasses.replace(
            h, stanzas=(dataclasses.replace(h.stanzas[0], key_id=h.stanzas[1].key_id),)
        ),
    )
    v.add(
        "fail_stanza_of_another_receiver",
        "Bob's stanza relabelled for Carol",
        wrapping,
        "open_error",
        relabel,
        CAROL,
        two_dep.release_for("carol"),
    )
    esc, esc_dep = seal_bytes({"f": b"secret"}, [BOB, CAROL], Mode.ESCROWED)
    v.add(
        "fail_escrowed_other_receivers_wrap",
        "escrowed mode, Carol given Bob's wrapped K3",
        wrapping,
        "open_error",
        esc,
        CAROL,
        esc_dep.release_for("bob"),
    )
    spaced = prefixed(b'{"files": [{"mode": 420, "name": "f", "size": 1}]}')
    sealed, dep = seal_raw_manifest(spaced, b"x", BOB)
    v.add(
        "fail_noncanonical_manifest",
        "manifest JSON with spaces",
        "Canonical JSON",
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
        sealed, dep = seal_raw_manifest(raw_manifest(names), b"x" * len(names), BOB)
        v.add(
            f"unsafe_{name}",
            f"file names {names!r}",
            "File names",
            "unsafe_path",
            sealed,
            BOB,
            dep.release_for("bob"),
        )


def all_vectors() -> Vectors:
    v = Vectors()
    big, dep = success_vectors(v)
    damage_vectors(v, big, dep)
    rules.name_vectors(v)
    rules.manifest_vectors(v)
    rules.binding_and_chunk_vectors(v)
    keyschedule.values_vector(v)
    return v


def main(out: Path = HERE) -> None:
    vectors = all_vectors()
    vectors.write(out)
    print(f"wrote {len(vectors.found)} vectors to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)

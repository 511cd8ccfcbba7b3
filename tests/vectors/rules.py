"""Vectors for the rules docs/format.md states exactly: the file names, the
manifest's canonical JSON, the binding of the header's `policy` and `escrow`
lines to the release, the chunk count and the header line length.

Not a test module: `generate.py` calls it."""

from __future__ import annotations

import dataclasses
import io
import unicodedata

import blake3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.format import keys
from client.format.header import (
    CHUNK_SIZE,
    TRAILER_SIGNATURE_LABEL,
    TRAILER_SIZE,
    chunk_nonce,
    parse_header,
)
from client.format.manifest import FileEntry, encode
from tests.client.consign_helpers import (
    ALICE,
    RECEIVERS,
    reseal_header,
    seal_bytes,
    seal_raw_manifest,
)
from tests.vectors.common import Vectors, prefixed, raw_manifest

BOB = RECEIVERS[0]
NAMES = "File names"
MANIFEST = "The manifest"
JSON = "Canonical JSON"
OPENING = "Opening, in order"

_COMPONENT = "c" * 255
_LONGEST = "/".join([_COMPONENT] * 4)  # 4 * 255 + 3 = 1023 bytes


def name_vectors(v: Vectors) -> None:
    refused: dict[str, tuple[str, list[str]]] = {
        "del": ("a name with DEL (U+007F)", ["a\x7fb"]),
        "c1_csi": ("a name with the C1 control U+009B (a terminal escape)", ["a\x9b31mb"]),
        "bidi_override": ("a name with U+202E (right-to-left override)", ["txt.\u202eexe"]),
        "line_separator": ("a name with U+2028 (line separator)", ["a\u2028b"]),
        "not_nfc": ("a name in NFD (e + U+0301), not NFC", [unicodedata.normalize("NFD", "é")]),
        "kelvin_sign": ("the Kelvin sign U+212A, whose NFC is K", ["\u212a"]),
        "case_collision": ("two names equal but for case", ["README", "readme"]),
        "sharp_s_collision": ("'straße' and 'STRASSE' fold alike", ["stra\u00dfe", "STRASSE"]),
        "dotless_i_collision": ("U+0131 and 'I' fold alike (NTFS)", ["\u0131", "I"]),
        "file_and_directory_by_case": ("'a' a file and 'A/b' below it", ["a", "A/b"]),
        "name_1024_bytes": ("a name of 1024 bytes, components <= 255", [_LONGEST + "z"]),
        "name_4095_bytes": ("a name of 4095 bytes (allowed before)", ["/".join([_COMPONENT] * 16)]),
        "component_256_bytes": ("a component of 256 bytes", ["c" * 256]),
        "drive_letter": ("a Windows drive 'C:'", ["C:x"]),
        "empty_component": ("an empty component", ["a//b"]),
    }
    for key, (description, names) in refused.items():
        sealed, dep = seal_raw_manifest(raw_manifest(names), b"x" * len(names), BOB)
        v.add(
            f"unsafe_{key}",
            description,
            NAMES,
            "unsafe_path",
            sealed,
            BOB,
            dep.release_for("bob"),
        )
    accepted = {
        "longest_name": ("a name of 1023 bytes, components of 255", {_LONGEST: b"deep"}),
        "unicode_names": (
            "NFC names: accents, CJK, an emoji ZWJ sequence, a quote (escaped) and a colon",
            {
                "caf\u00e9.txt": b"1",
                "\u6587\u4ef6/\U0001f469\u200d\U0001f4bb.txt": b"2",
                'say "hi": now': b"3",
                "Docs/a": b"4",
                "docs/b": b"5",
            },
        ),
    }
    for key, (description, files) in accepted.items():
        sealed, dep = seal_bytes(files, [BOB])
        v.add(
            f"success_{key}",
            description,
            NAMES,
            "success",
            sealed,
            BOB,
            dep.release_for("bob"),
            files,
        )
    sealed, dep = seal_raw_manifest(prefixed(b'{"files":[]}'), b"", BOB)
    v.add(
        "success_empty_file_list",
        "an empty file list: opens to no files",
        MANIFEST,
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        {},
    )


def manifest_vectors(v: Vectors) -> None:
    entry = b'{"files":[{"mode":420,"name":%s,"size":%s}]}'
    bad: dict[str, tuple[str, str, bytes]] = {
        "lone_surrogate": ("a name with a lone surrogate", JSON, entry % (rb'"\ud800"', b"1")),
        "integer_beyond_2_53": (
            "a size of 2^53 (outside the integer range)",
            JSON,
            entry % (b'"x"', b"9007199254740992"),
        ),
        "nested_10000": (
            "arrays nested 10,000 deep (a parser must not recurse on them)",
            JSON,
            b'{"files":[{"mode":420,"name":"x","size":1,"z":'
            + b"[" * 10_000
            + b"]" * 10_000
            + b"}]}",
        ),
        "duplicate_key": (
            "a key twice in one object",
            JSON,
            b'{"files":[{"mode":420,"name":"x","name":"x","size":1}]}',
        ),
        "float_size": ("a size written 1.0", JSON, entry % (b'"x"', b"1.0")),
        "escaped_ascii": ("'x' written \\u0078", JSON, entry % (rb'"\u0078"', b"1")),
        "escaped_slash": ("'/' written \\/", JSON, entry % (rb'"a\/b"', b"1")),
        "uppercase_hex_escape": ("U+001F written \\u001F", JSON, entry % (rb'"a\u001Fb"', b"1")),
        "minus_zero": ("a mode of -0", JSON, b'{"files":[{"mode":-0,"name":"x","size":1}]}'),
        "extra_member": (
            "an entry with a member besides mode, name and size",
            MANIFEST,
            b'{"files":[{"mode":420,"name":"x","owner":"root","size":1}]}',
        ),
        "mode_beyond_0o777": (
            "a mode of 0o1000",
            MANIFEST,
            b'{"files":[{"mode":512,"name":"x","size":1}]}',
        ),
        "sizes_do_not_add_up": (
            "the manifest's sizes are one byte short of the payload size",
            "Payload",
            entry % (b'"x"', b"0"),
        ),
    }
    for key, (description, spec, body) in bad.items():
        sealed, dep = seal_raw_manifest(prefixed(body), b"x", BOB)
        v.add(
            f"fail_manifest_{key}",
            description,
            spec,
            "open_error",
            sealed,
            BOB,
            dep.release_for("bob"),
        )


def _one_full_chunk() -> dict[str, bytes]:
    """One file whose payload (manifest included) is exactly one full chunk."""
    size = CHUNK_SIZE
    for _ in range(3):
        size = CHUNK_SIZE - len(encode([FileEntry("f", size)]))
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert len(encode([FileEntry("f", size)])) + size == CHUNK_SIZE
    return {"f": data}


def binding_and_chunk_vectors(v: Vectors) -> None:
    small = {"f": b"secret"}
    sealed, dep = seal_bytes(small, [BOB])
    rel = dep.release_for("bob")
    other_policy = reseal_header(
        sealed, dep, BOB, lambda h: dataclasses.replace(h, policy_digest=bytes(range(32)))
    )
    v.add(
        "fail_header_policy_not_the_releases",
        "the header names another policy; its MAC and both signatures are the sender's",
        OPENING,
        "open_error",
        other_policy,
        BOB,
        rel,
    )
    other_escrow = reseal_header(
        sealed, dep, BOB, lambda h: dataclasses.replace(h, escrow="elsewhere.example")
    )
    v.add(
        "fail_header_escrow_not_the_releases",
        "the header names another escrow; its MAC and both signatures are the sender's",
        OPENING,
        "open_error",
        other_escrow,
        BOB,
        rel,
    )
    v.add(
        "fail_release_of_another_escrow",
        "the release names another escrow than the header",
        "The release",
        "open_error",
        sealed,
        BOB,
        rel.model_copy(update={"escrow": "elsewhere.example"}),
    )

    files = _one_full_chunk()
    sealed, dep = seal_bytes(files, [BOB])
    rel = dep.release_for("bob")
    v.add(
        "success_one_full_chunk",
        "a payload of exactly 65,536 bytes: one chunk, full, flagged last",
        "Payload",
        "success",
        sealed,
        BOB,
        rel,
        files,
    )
    v.add(
        "fail_trailing_empty_chunk",
        "the same payload with an empty chunk after the full one (flagged last "
        "instead), every signature made again by the sender",
        "Payload",
        "open_error",
        _with_trailing_empty_chunk(sealed, rel),
        BOB,
        rel,
    )

    escrow = "e" * 248
    sealed, dep = seal_bytes(small, [BOB], escrow=escrow)
    assert sealed.split(b"\n")[2] == b"escrow " + escrow.encode()
    assert len(sealed.split(b"\n")[2]) + 1 == 256
    v.add(
        "success_escrow_line_of_256_bytes",
        "an escrow name of 248 characters: its line is 256 bytes with the LF",
        "Header",
        "success",
        sealed,
        BOB,
        dep.release_for("bob"),
        small,
    )


def _with_trailing_empty_chunk(sealed: bytes, release: object) -> bytes:
    """What a writer that adds an empty last chunk would make (the sender signs)."""
    header = parse_header(io.BytesIO(sealed))
    head = header.serialize()
    key = keys.recover_content_key(header, BOB.encryption, release)  # type: ignore[arg-type]
    aead = AESGCM(keys.payload_key(key, header.payload_salt))
    body = sealed[len(head) : -TRAILER_SIZE]
    plain = aead.decrypt(chunk_nonce(0, True), body, None)
    assert len(plain) == CHUNK_SIZE
    payload = aead.encrypt(chunk_nonce(0, False), plain, None)
    payload += aead.encrypt(chunk_nonce(1, True), b"", None)
    commitment = sealed[-TRAILER_SIZE:][:32]
    digest = blake3.blake3(head + payload).digest()
    signature = ALICE.signing.sign(TRAILER_SIGNATURE_LABEL + digest + commitment)
    return head + payload + commitment + signature

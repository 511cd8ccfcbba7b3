"""The checked-in test vectors (tests/vectors/*.json, made by generate.py) open, or
fail, exactly as each one says; each names the section of docs/format.md it
exercises; the key schedule's values are what the spec's formulas give; and
the generator, run again, makes the same vectors with the same outcomes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.deposit import KeyRelease, Mode
from client.consignment import unseal
from client.errors import OpenError, UnsafePathError
from client.format import keys

ROOT = Path(__file__).parents[2]
VECTORS = sorted((ROOT / "tests" / "vectors").glob("*.json"))
CONSIGNMENTS = [v for v in VECTORS if v.stem != "keyschedule"]
SPEC = (ROOT / "docs" / "format.md").read_text()
HEADINGS = set(re.findall(r"^#{2,3} (.+)$", SPEC, re.M))
REQUIRED = {
    "success_split_one_receiver",
    "success_escrowed_two_receivers",
    "success_many_files",
    "success_virtual_safe",
    "success_empty_file_list",
    "success_longest_name",
    "success_unicode_names",
    "success_one_full_chunk",
    "success_escrow_line_of_256_bytes",
    "fail_truncated_mid_chunk",
    "fail_extended_byte",
    "fail_reordered_chunks",
    "fail_bitflip_header",
    "fail_bitflip_payload",
    "fail_unknown_version",
    "fail_wrong_receiver_key",
    "fail_wrong_k2",
    "fail_policy_swapped_at_escrow",
    "fail_forged_signature",
    "fail_header_mac_only",
    "fail_commitment_only",
    "fail_header_policy_not_the_releases",
    "fail_header_escrow_not_the_releases",
    "fail_release_of_another_escrow",
    "fail_trailing_empty_chunk",
    "fail_manifest_lone_surrogate",
    "fail_manifest_integer_beyond_2_53",
    "fail_manifest_nested_10000",
    "fail_manifest_escaped_ascii",
    "fail_manifest_uppercase_hex_escape",
    "fail_manifest_duplicate_key",
    "unsafe_dotdot",
    "unsafe_absolute",
    "unsafe_del",
    "unsafe_c1_csi",
    "unsafe_bidi_override",
    "unsafe_not_nfc",
    "unsafe_kelvin_sign",
    "unsafe_case_collision",
    "unsafe_file_and_directory_by_case",
    "unsafe_name_1024_bytes",
    "unsafe_component_256_bytes",
    "keyschedule",
}


def test_every_rule_has_a_vector() -> None:
    assert {v.stem for v in VECTORS} >= REQUIRED


@pytest.mark.parametrize("path", VECTORS, ids=[v.stem for v in VECTORS])
def test_each_vector_says_where_it_comes_from_and_what_it_checks(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert vector["source"] == "tests/vectors/generate.py"
    assert vector["spec"] in HEADINGS, f"{vector['spec']!r} is not a section of docs/format.md"
    assert vector["description"]
    assert vector["expect"] in {"success", "open_error", "unsafe_path", "values"}


@pytest.mark.parametrize("path", CONSIGNMENTS, ids=[v.stem for v in CONSIGNMENTS])
def test_vector(path: Path, tmp_path: Path) -> None:
    vector: dict[str, Any] = json.loads(path.read_text())
    kwargs: dict[str, Any] = {
        "identity": X25519PrivateKey.from_private_bytes(
            base64.b64decode(vector["receiver_private_key"])
        ),
        "release": KeyRelease.model_validate(vector["release"]),
        "sender_key": Ed25519PublicKey.from_public_bytes(
            base64.b64decode(vector["sender_public_key"])
        ),
    }
    source = io.BytesIO(base64.b64decode(vector["consignment"]))
    dest = tmp_path / "out"
    expect = vector["expect"]
    if expect == "success":
        opened = unseal(source, dest, **kwargs)
        got = {
            e.name: hashlib.sha256((dest / e.name).read_bytes()).hexdigest() for e in opened.files
        }
        assert got == vector["files"]
        return
    with pytest.raises(OpenError) as info:
        unseal(source, dest, **kwargs)
    if expect == "unsafe_path":
        assert type(info.value) is UnsafePathError
    else:
        assert type(info.value) is OpenError
        assert (info.value.message, info.value.hint) == (OpenError.MESSAGE, OpenError.HINT)
    assert list(tmp_path.iterdir()) == []


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def test_the_key_schedule_values_are_the_specs_formulas() -> None:
    """Each value computed here from docs/format.md's formulas (not the
    implementation's functions), and by the implementation too."""
    v = json.loads((ROOT / "tests" / "vectors" / "keyschedule.json").read_text())
    x = {k: bytes.fromhex(v[k]) for k in ("k1", "k2", "k3", "id", "payload_salt")}
    policy = v["policy_canonical_json"].encode()
    digest = hashlib.sha256(b"consignment/v1 policy\x00" + policy).digest()
    assert digest.hex() == v["policy_digest"]
    public = bytes.fromhex(v["receiver_public_key"])
    assert (
        hashlib.sha256(b"consignment/v1 key id\x00" + public).digest()[:8].hex()
        == v["receiver_key_id"]
    )
    label = b"consignment/v1 content key"
    split = _hkdf(x["k1"] + x["k2"], x["id"], label + b"\x01" + digest)
    escrowed = _hkdf(x["k3"], x["id"], label + b"\x02" + digest)
    assert (split.hex(), escrowed.hex()) == (v["content_key_split"], v["content_key_escrowed"])
    assert split == keys.content_key(Mode.SPLIT, x["k1"] + x["k2"], x["id"], digest)
    assert escrowed == keys.content_key(Mode.ESCROWED, x["k3"], x["id"], digest)
    derived = {
        "payload_key": _hkdf(split, x["payload_salt"], b"consignment/v1 payload"),
        "header_mac_key": _hkdf(split, None, b"consignment/v1 header mac"),
        "commitment_key": _hkdf(split, bytes(32), b"consignment/v1 plaintext commitment"),
    }
    assert {k: d.hex() for k, d in derived.items()} == {k: v[k] for k in derived}
    assert derived["payload_key"] == keys.payload_key(split, x["payload_salt"])
    nonces = [(i.to_bytes(11, "big") + bytes([i == 2])).hex() for i in range(3)]
    assert nonces == v["chunk_nonces_of_3"]
    mac = hmac.HMAC(derived["header_mac_key"], hashes.SHA256())
    mac.update(bytes.fromhex(v["header_mac_input"]))
    assert mac.finalize().hex() == v["header_mac"]
    signed = bytes.fromhex(v["header_signed_input"])
    mac_b64 = base64.b64encode(bytes.fromhex(v["header_mac"])).rstrip(b"=")
    assert signed == (
        b"consignment/v1 header signature\x00"
        + bytes.fromhex(v["header_mac_input"])
        + b" "
        + mac_b64
        + b"\n"
    )
    hpke = v["hpke"]
    assert bytes.fromhex(hpke["info"]) == b"consignment/v1 K1\x00" + x["id"] + digest
    receiver = X25519PrivateKey.from_private_bytes(bytes.fromhex(hpke["receiver_private_key"]))
    unwrapped = keys.unwrap(
        Mode.SPLIT, bytes.fromhex(hpke["enc_and_ciphertext"]), receiver, x["id"], digest
    )
    assert unwrapped.hex() == hpke["plaintext"] == v["k1"]


def test_the_generator_makes_the_same_vectors_with_the_same_outcomes() -> None:
    from tests.vectors.generate import all_vectors

    made = all_vectors().found
    kept = {p.stem: json.loads(p.read_text()) for p in VECTORS}
    assert set(made) == set(kept)
    for name, vector in made.items():
        for field in ("description", "spec", "expect", "files"):
            assert vector.get(field) == kept[name].get(field), (name, field)

"""The checked-in test vectors (tests/vectors/*.json, made by generate.py) open, or
fail, exactly as each one says."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.deposit import KeyRelease
from client.consignment import unseal
from client.errors import OpenError, UnsafePathError

VECTORS = sorted((Path(__file__).parents[1] / "vectors").glob("*.json"))
REQUIRED = {
    "success_split_one_receiver",
    "success_escrowed_two_receivers",
    "success_many_files",
    "success_virtual_safe",
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
    "unsafe_dotdot",
    "unsafe_absolute",
}


def test_every_failure_class_has_a_vector() -> None:
    assert {v.stem for v in VECTORS} >= REQUIRED


@pytest.mark.parametrize("path", VECTORS, ids=[v.stem for v in VECTORS])
def test_vector(path: Path, tmp_path: Path) -> None:
    vector: dict[str, Any] = json.loads(path.read_text())
    assert vector["source"] == "tests/vectors/generate.py"
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
    error = {"open_error": OpenError, "unsafe_path": UnsafePathError}[expect]
    with pytest.raises(error):
        unseal(source, dest, **kwargs)
    assert not dest.exists()

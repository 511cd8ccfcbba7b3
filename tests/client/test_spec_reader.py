"""docs/format.md is exact: a reader written from it alone (spec_reader.py,
which uses none of the client's code) agrees with the implementation on every
vector: the same files from each success, and the same outcome for each
failure."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from tests.client.spec_reader import Refused, read

VECTORS = sorted(
    p for p in (Path(__file__).parents[1] / "vectors").glob("*.json") if p.stem != "keyschedule"
)


@pytest.mark.parametrize("path", VECTORS, ids=[v.stem for v in VECTORS])
def test_a_reader_written_from_the_spec_agrees(path: Path) -> None:
    vector = json.loads(path.read_text())
    args = (
        base64.b64decode(vector["consignment"]),
        base64.b64decode(vector["receiver_private_key"]),
        base64.b64decode(vector["sender_public_key"]),
        vector["release"],
    )
    if vector["expect"] == "success":
        files = read(*args)
        assert {n: hashlib.sha256(d).hexdigest() for n, d in files.items()} == vector["files"]
        return
    with pytest.raises(Refused) as refused:
        read(*args)
    assert refused.value.outcome == vector["expect"], str(refused.value)

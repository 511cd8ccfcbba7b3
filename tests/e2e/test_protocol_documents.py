"""The machine-readable protocol (docs/schemas/, docs/asyncapi.json,
docs/examples/) is what the models say: regenerating it changes no byte
(`python tools/protocol_docs.py` regenerates, `--check` is this test), every
schema is valid JSON Schema 2020-12, every example validates against its
schemas and its signature verifies with the published example keys, and every
reference in the AsyncAPI document resolves."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jsonschema import Draft202012Validator, FormatChecker

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMAS = DOCS / "schemas"
EXAMPLES = DOCS / "examples"
CONTEXT = b"consignment/envelope/v1\x00"


def _tool() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "tools" / "protocol_docs.py"
    spec = importlib.util.spec_from_file_location("protocol_docs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        json.loads((SCHEMAS / name).read_text()), format_checker=FormatChecker()
    )


def test_the_committed_documents_are_what_the_models_make() -> None:
    assert _tool().differences() == []


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_every_schema_is_valid_json_schema(path: Path) -> None:
    Draft202012Validator.check_schema(json.loads(path.read_text()))


def _examples() -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = json.loads((EXAMPLES / "index.json").read_text())["examples"]
    return examples


def test_there_is_an_example_of_every_type() -> None:
    types = {e["type"] for e in _examples()}
    bodies = {p.name.removesuffix(".v1.schema.json") for p in SCHEMAS.glob("*.v1.schema.json")}
    assert types == bodies
    assert len(bodies) == 24


@pytest.mark.parametrize("example", _examples(), ids=lambda e: e["type"])
def test_every_example_validates_and_verifies(example: dict[str, Any]) -> None:
    data = (EXAMPLES / example["file"]).read_bytes()
    wire = json.loads(data)
    assert not list(_validator("wire.schema.json").iter_errors(wire))
    payload = base64.b64decode(wire["payload"], validate=True)
    envelope = json.loads(payload)
    assert envelope == example["envelope"]
    assert not list(_validator("envelope.schema.json").iter_errors(envelope))
    body_schema = f"{envelope['type']}.v{envelope['version']}.schema.json"
    assert not list(_validator(body_schema).iter_errors(envelope["body"]))
    keys = json.loads((EXAMPLES / "keys.json").read_text())
    party = keys["parties"][example["signed_by"]]
    assert envelope["signer"] == party["signer"]
    cert = x509.load_pem_x509_certificate(party["signing_certificate"].encode())
    key = cert.public_key()
    assert isinstance(key, Ed25519PublicKey)
    key.verify(base64.b64decode(wire["signature"]), CONTEXT + payload)
    assert json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode() == payload


def test_the_deposit_example_validates_against_the_deposit_schema() -> None:
    plaintext = json.loads((EXAMPLES / "deposit-plaintext.json").read_bytes())
    assert not list(_validator("deposit.schema.json").iter_errors(plaintext))
    incomplete = dict(plaintext)
    del incomplete["version"]
    assert list(_validator("deposit.schema.json").iter_errors(incomplete))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    document = json.loads((DOCS / "asyncapi.json").read_text())
    assert document["asyncapi"] == "3.0.0"
    refs = _refs(document)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            node: Any = document
            for part in ref[2:].split("/"):
                node = node[part]
        else:
            assert (DOCS / ref).is_file(), ref
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")


def test_every_reply_type_has_its_request_and_each_says_who_signs() -> None:
    """A reply type without its request in `broker.asyncapi.REPLIES` made the
    AsyncAPI document say the request (e.g. `history`) was signed by the escrow."""
    from broker.asyncapi import REPLIES
    from broker.messages import MessageType

    replied = {reply.value.removesuffix("-reply") for reply in REPLIES.values()}
    for type_ in MessageType:
        if type_.value.endswith("-reply"):
            assert type_.value.removesuffix("-reply") in replied, type_
    messages = json.loads((DOCS / "asyncapi.json").read_text())["components"]["messages"]
    for request in REPLIES:
        assert messages[request.value]["summary"].endswith("signed by the requesting agent")

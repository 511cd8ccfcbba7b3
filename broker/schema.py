"""JSON Schema (draft 2020-12) for everything on the wire, made from the models.

One schema per message body (`broker.messages.MESSAGE_TYPES`), and for the
signed envelope (`broker.envelope.Envelope`), its wire form and the deposit JSON
sealed to the escrow (`broker.deposit.Deposit`). Byte strings are described as
they travel: standard base64 with padding (``contentEncoding: base64``, a
pattern, and lengths in characters computed from the models' byte limits).
docs/schemas/ holds the output; `tools/protocol_docs.py` writes it and a test
fails when the models and the committed files differ.

Pure functions over the models: this module must never do I/O, and must never
describe anything the models do not enforce.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from broker.canonical import B64
from broker.deposit import Deposit
from broker.envelope import MAX_ENVELOPE_BYTES, Envelope
from broker.messages import MESSAGE_TYPES

__all__ = [
    "B64_PATTERN",
    "DIALECT",
    "body_schema_name",
    "dumps",
    "json_schemas",
]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: Standard base64 with padding (RFC 4648 section 4), nothing else.
B64_PATTERN: Final = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _b64_chars(size: int) -> int:
    return 4 * ((size + 2) // 3)


class _Generator(GenerateJsonSchema):
    """Bytes are base64 strings on the wire; their limits are given in bytes by
    the models and in characters here."""

    def bytes_schema(self, schema: core_schema.BytesSchema) -> JsonSchemaValue:
        out: JsonSchemaValue = {
            "type": "string",
            "contentEncoding": "base64",
            "pattern": B64_PATTERN,
        }
        if "min_length" in schema:
            out["minLength"] = _b64_chars(schema["min_length"])
        if "max_length" in schema:
            out["maxLength"] = _b64_chars(schema["max_length"])
        return out


class WireForm(BaseModel):
    """The signed envelope as it travels (the AMQP body): canonical JSON of the
    exact signed bytes and the Ed25519 signature, both base64."""

    model_config = ConfigDict(extra="forbid", title="Signed envelope, wire form")

    payload: B64 = Field(description="canonical JSON of the envelope: the signed bytes")
    signature: B64 = Field(
        min_length=64,
        max_length=64,
        description='Ed25519 over "consignment/envelope/v1" || 0x00 || payload',
    )
    v: Literal[1] = Field(description="wire form version")


def body_schema_name(type_: str, version: int) -> str:
    return f"{type_}.v{version}.schema.json"


_OMITTED: Final = "x-omitted-when-absent"


def _schema(model: type[BaseModel], title: str | None = None) -> dict[str, Any]:
    schema = model.model_json_schema(schema_generator=_Generator)
    out: dict[str, Any] = {"$schema": DIALECT, **schema}
    if title is not None:
        out["title"] = title
    for node in [out, *out.get("$defs", {}).values()]:
        for prop in node.get("properties", {}).values():
            if prop.pop(_OMITTED, False):
                # Never null on the wire: the member is there with a value, or absent.
                prop["anyOf"] = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
                prop.pop("default", None)
                prop["description"] = "present only when given; never null"
                prop[_OMITTED] = True
    return out


def _all_required(schema: dict[str, Any]) -> dict[str, Any]:
    """Every property of every object required (but those present only when
    given): the form `seal_deposit` writes and `open_deposit` alone accepts."""
    for node in [schema, *schema.get("$defs", {}).values()]:
        if node.get("type") == "object" and "properties" in node:
            node["required"] = sorted(
                name for name, prop in node["properties"].items() if not prop.get(_OMITTED)
            )
    for node in [schema, *schema.get("$defs", {}).values()]:
        for prop in node.get("properties", {}).values():
            prop.pop(_OMITTED, None)
    return schema


def _envelope_schema() -> dict[str, Any]:
    schema = _schema(Envelope, "Envelope (the signed payload)")
    nonce = schema["properties"]["nonce"]
    nonce.update(contentEncoding="base64", pattern=B64_PATTERN)
    nonce["description"] = "16 to 64 random bytes"
    schema["properties"]["body"]["description"] = "the body: see <type>.v<version>.schema.json"
    return schema


def _wire_schema() -> dict[str, Any]:
    schema = _schema(WireForm)
    # A size in bytes of the whole document is beyond JSON Schema: said in words.
    schema["description"] = (
        f"{schema['description']} At most {MAX_ENVELOPE_BYTES} bytes, canonical JSON."
    )
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for docs/schemas/."""
    schemas = {
        "wire.schema.json": _wire_schema(),
        "envelope.schema.json": _envelope_schema(),
        "deposit.schema.json": _all_required(_schema(Deposit, "Deposit (sealed to the escrow)")),
    }
    for (type_, version), model in MESSAGE_TYPES.items():
        title = f"{type_} v{version} body ({model.__name__})"
        schemas[body_schema_name(type_, version)] = _schema(model, title)
    return schemas


def dumps(document: Any) -> str:
    """How the documents are committed: sorted keys, two-space indent, one LF."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

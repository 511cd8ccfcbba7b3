"""What a sender deposits at the escrow, and what the escrow releases to a receiver.

These are wire models shared by the client (which produces a Deposit when it seals
and consumes a KeyRelease when it opens) and the escrow worker (which stores the
one and answers with the other). They hold key material; this module must never
log or print it, and `repr` of a model never shows a key.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from broker.canonical import B64, HEX_DIGEST, HEX_ID, NAME, canonical_json

__all__ = [
    "ControlAttributes",
    "Deposit",
    "KeyRelease",
    "Mode",
    "Policy",
    "ReceiverAttributes",
    "ReceiverSpec",
    "key_id",
]

#: Co-signers one policy may name.
MAX_COSIGNERS = 64

#: 248 so that the header line "escrow <name>" stays within the 256-byte line limit.
ESCROW_ADDRESS = re.compile(r"^[\x21-\x7e]{1,248}$")


class Mode(StrEnum):
    """How the content key is split between the consignment and the escrow."""

    SPLIT = "split"  # K1 in the consignment (wrapped to each receiver), K2 at the escrow
    ESCROWED = "escrowed"  # K3 wrapped to each receiver, deposited at the escrow only


def key_id(public_key_raw: bytes) -> bytes:
    """The 8-byte identifier of a receiver's X25519 key in stanzas and deposits."""
    return hashlib.sha256(b"consignment/v1 key id\x00" + public_key_raw).digest()[:8]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class ReceiverAttributes(_Frozen):
    """One receiver's own conditions. Each field given (not null) replaces the
    policy-wide attribute of the same name for this receiver only; null keeps the
    policy-wide one. Co-signers are the consignment's, never one receiver's.

    At least one field is given: a receiver with no conditions of its own has no
    `attributes` member at all, so each policy has one encoding."""

    not_before: int | None = Field(default=None, ge=0)
    not_after: int | None = Field(default=None, ge=0)
    ask_within_seconds: int | None = Field(default=None, gt=0)
    max_releases: int | None = Field(default=None, gt=0)
    receipt_required: bool | None = None

    @model_validator(mode="after")
    def _given(self) -> ReceiverAttributes:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError("a receiver's attributes must give at least one attribute")
        if (
            self.not_before is not None
            and self.not_after is not None
            and self.not_after <= self.not_before
        ):
            raise ValueError("not_after must be later than not_before")
        return self

    def overrides(self) -> dict[str, int | bool]:
        """The attributes given, by name."""
        values = {f: getattr(self, f) for f in type(self).model_fields}
        return {k: v for k, v in values.items() if v is not None}


class ReceiverSpec(_Frozen):
    """One receiver named in a policy: its registered name and encryption key,
    and its own conditions if the sender gave it any."""

    name: str = Field(pattern=NAME.pattern)
    encryption_key: B64 = Field(repr=False)
    #: Absent (never null) in the canonical encoding when the receiver has no
    #: conditions of its own: a policy without any keeps the bytes, and the
    #: digest, it had before per-receiver attributes existed.
    attributes: ReceiverAttributes | None = Field(
        default=None, json_schema_extra={"x-omitted-when-absent": True}
    )

    @model_validator(mode="after")
    def _key_length(self) -> ReceiverSpec:
        if len(self.encryption_key) != 32:
            raise ValueError("encryption_key must be a 32-byte X25519 public key")
        return self

    @model_serializer(mode="wrap")
    def _omit_absent_attributes(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if self.attributes is None:
            data.pop("attributes", None)
        return data

    @property
    def key_id(self) -> bytes:
        return key_id(self.encryption_key)


class ControlAttributes(_Frozen):
    """The sender's conditions for release; the escrow enforces them on its own clock.

    Times are whole seconds since the Unix epoch (UTC), so that the policy digest
    has exactly one input for each policy.
    """

    not_before: int | None = Field(default=None, ge=0)
    not_after: int | None = Field(default=None, ge=0)
    ask_within_seconds: int | None = Field(default=None, gt=0)
    max_releases: int | None = Field(default=None, gt=0)
    receipt_required: bool = False
    cosigners: tuple[str, ...] = Field(default=(), max_length=MAX_COSIGNERS)

    @model_validator(mode="after")
    def _window(self) -> ControlAttributes:
        if (
            self.not_before is not None
            and self.not_after is not None
            and self.not_after <= self.not_before
        ):
            raise ValueError("not_after must be later than not_before")
        for name in self.cosigners:
            if not NAME.match(name):
                raise ValueError(f"co-signer name {name!r} is not a valid identity name")
        if len(set(self.cosigners)) != len(self.cosigners):
            raise ValueError("co-signers must be distinct")
        return self


class Policy(_Frozen):
    """Who may receive, under which conditions, from which escrow.

    Its digest is bound into the content key: a policy changed at the escrow or in
    the consignment yields no key.
    """

    version: Literal[1] = 1
    escrow: str = Field(pattern=ESCROW_ADDRESS.pattern)
    sender: str = Field(pattern=NAME.pattern)
    receivers: tuple[ReceiverSpec, ...] = Field(min_length=1, max_length=1024)
    attributes: ControlAttributes = ControlAttributes()

    @model_validator(mode="after")
    def _distinct_receivers(self) -> Policy:
        names = [r.name for r in self.receivers]
        if len(set(names)) != len(names):
            raise ValueError("receiver names must be distinct")
        ids = [r.key_id for r in self.receivers]
        if len(set(ids)) != len(ids):
            raise ValueError("receiver encryption keys must be distinct")
        for spec in self.receivers:
            if spec.attributes is not None:
                merged = {**self.attributes.model_dump(), **spec.attributes.overrides()}
                start, end = merged["not_before"], merged["not_after"]
                if start is not None and end is not None and end <= start:
                    raise ValueError(
                        f"receiver {spec.name!r}: not_after must be later than not_before "
                        "(its own window, or its own time with the policy-wide one)"
                    )
        return self

    def canonical(self) -> bytes:
        """The canonical JSON bytes the digest is computed over."""
        return canonical_json(self.model_dump(mode="json"))

    def digest(self) -> bytes:
        """SHA-256 over the domain-separated canonical encoding (32 bytes)."""
        return hashlib.sha256(b"consignment/v1 policy\x00" + self.canonical()).digest()

    def receiver(self, name: str) -> ReceiverSpec | None:
        return next((r for r in self.receivers if r.name == name), None)

    def attributes_for(self, name: str) -> ControlAttributes:
        """The conditions that hold for receiver `name`: the policy-wide ones,
        each replaced by the receiver's own where it has one."""
        spec = self.receiver(name)
        if spec is None or spec.attributes is None:
            return self.attributes
        return ControlAttributes.model_validate(
            {**self.attributes.model_dump(), **spec.attributes.overrides()}
        )


class Deposit(_Frozen):
    """Everything the escrow receives for one consignment (never its bytes).

    In split mode `escrow_key` is K2 and `wrapped_keys` is empty; in escrowed mode
    `escrow_key` is absent and `wrapped_keys` maps each receiver's key id (hex) to
    K3 wrapped to that receiver with HPKE. Neither alone opens the consignment.
    """

    version: Literal[1] = 1
    consignment_id: str = Field(pattern=HEX_ID.pattern)
    mode: Mode
    policy: Policy
    policy_digest: B64
    escrow_key: B64 | None = Field(default=None, repr=False)
    wrapped_keys: dict[str, B64] = Field(default_factory=dict, repr=False)
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    plaintext_commitment: str = Field(pattern=HEX_DIGEST.pattern)
    consignment_size: int = Field(ge=0)
    sealed_at: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Deposit:
        if self.policy_digest != self.policy.digest():
            raise ValueError("policy_digest does not match the policy")
        if self.mode is Mode.SPLIT:
            if self.escrow_key is None or len(self.escrow_key) != 32 or self.wrapped_keys:
                raise ValueError("a split-mode deposit carries a 32-byte escrow_key only")
        else:
            expected = {r.key_id.hex() for r in self.policy.receivers}
            if self.escrow_key is not None or set(self.wrapped_keys) != expected:
                raise ValueError(
                    "an escrowed-mode deposit carries one wrapped key per receiver only"
                )
        return self

    def release_for(self, receiver_name: str) -> KeyRelease:
        """The key part the escrow hands to one receiver once every condition holds."""
        spec = self.policy.receiver(receiver_name)
        if spec is None:
            raise KeyError(receiver_name)
        part = self.escrow_key if self.mode is Mode.SPLIT else self.wrapped_keys[spec.key_id.hex()]
        assert part is not None  # guaranteed by _consistent
        return KeyRelease(
            consignment_id=self.consignment_id,
            mode=self.mode,
            escrow=self.policy.escrow,
            policy_digest=self.policy_digest,
            key_part=part,
        )


class KeyRelease(_Frozen):
    """What a receiver needs from the escrow to open: the release that `unseal`
    takes (docs/format.md, "The release"), serialisable as JSON.

    - `consignment_id`: the 32 lowercase hex digits of the consignment's id;
    - `mode`: "split" or "escrowed";
    - `escrow`: the name of the escrow that released it (the signer of the
      signed release: the agent's own escrow);
    - `policy_digest`: 32 bytes, the digest of the policy as the escrow holds it
      (standard base64 with padding in JSON); opening derives the content key
      from it, so a policy swapped at the escrow opens nothing;
    - `key_part`: in split mode K2 (32 bytes, opened from the escrow's HPKE seal),
      in escrowed mode the receiver's wrapped K3 as the escrow returned it
      (80 bytes of HPKE output); base64 with padding in JSON.

    `unseal` refuses (the one OpenError) a release whose id, mode, escrow or
    policy digest is not the header's, or whose key part has another length.
    """

    consignment_id: str = Field(pattern=HEX_ID.pattern)
    mode: Mode
    escrow: str = Field(pattern=ESCROW_ADDRESS.pattern)
    policy_digest: B64
    key_part: B64 = Field(repr=False)

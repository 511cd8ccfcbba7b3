"""What every message body shares: the base model (frozen, no unknown fields),
the reply's `in_reply_to`, and the field rules for ids and names. Used by
`broker.messages` and `broker.control_messages`; holds no logic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from broker.canonical import HEX_ID, NAME

__all__ = ["ConsignmentId", "Name", "RequestId", "_Body", "_Reply"]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


ConsignmentId = Field(pattern=HEX_ID.pattern)
Name = Field(pattern=NAME.pattern)
RequestId = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")


class _Reply(_Body):
    """A reply names, inside the signature, the request it answers."""

    in_reply_to: str = RequestId

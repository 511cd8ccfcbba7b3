"""Canonical JSON: the one byte encoding that digests and signatures are computed over.

Rules (docs/format.md, "Canonical JSON"): UTF-8, object keys sorted by code point,
no insignificant whitespace, non-ASCII escaped as \\uXXXX, integers only (a float
is refused, so no value has two spellings), no NaN or infinity. This module must
never accept a value it could not encode the same way twice.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json"]


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("canonical JSON carries integers only, not floats")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("canonical JSON object keys must be strings")
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def canonical_json(value: Any) -> bytes:
    """Encode plain data (dict, list, str, int, bool, None) canonically."""
    _reject_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")

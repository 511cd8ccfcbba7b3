"""Hostile manifests: JSON a sender (or any co-receiver, who holds K) can put in
the payload. Whatever it holds, opening fails with the one `OpenError` and
writes nothing; the manifest encoding is canonical both ways."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.consignment import unseal
from client.errors import OpenError, UnsafePathError
from client.format.manifest import FileEntry, ManifestFormatError, decode, encode
from tests.client.consign_helpers import ALICE, RECEIVERS, seal_raw_manifest

BOB = RECEIVERS[0]


def _open_raw(body: bytes, payload: bytes, dest: Path) -> None:
    sealed, deposit = seal_raw_manifest(len(body).to_bytes(4, "big") + body, payload, BOB)
    unseal(
        io.BytesIO(sealed),
        dest,
        identity=BOB.encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
    )


def _deep(depth: int) -> bytes:
    return b'{"files":[{"mode":420,"name":"x","size":1,"z":' + b"[" * depth + b"]" * depth + b"}]}"


HOSTILE = {
    "lone-surrogate": rb'{"files":[{"mode":420,"name":"\ud800","size":1}]}',
    "lone-surrogate-low": rb'{"files":[{"mode":420,"name":"a\udfffb","size":1}]}',
    "size-beyond-2^53-1": b'{"files":[{"mode":420,"name":"x","size":9007199254740992}]}',
    "mode-beyond-2^53-1": b'{"files":[{"mode":9007199254740993,"name":"x","size":1}]}',
    "size-negative-huge": b'{"files":[{"mode":420,"name":"x","size":-9007199254740993}]}',
    "nested-40": _deep(40),
    "nested-100000": _deep(100_000),
    "float-size": b'{"files":[{"mode":420,"name":"x","size":1.0}]}',
    "exponent-size": b'{"files":[{"mode":420,"name":"x","size":1e0}]}',
    "nan": b'{"files":[{"mode":420,"name":"x","size":NaN}]}',
    "duplicate-key": b'{"files":[{"mode":420,"name":"x","name":"y","size":1}]}',
    "escaped-ascii": rb'{"files":[{"mode":420,"name":"\u0078","size":1}]}',
    "escaped-slash": rb'{"files":[{"mode":420,"name":"a\/b","size":1}]}',
    "uppercase-hex-escape": rb'{"files":[{"mode":420,"name":"a\u001Fb","size":1}]}',
    "not-utf8": b'{"files":[{"mode":420,"name":"\xff","size":1}]}',
    "utf16": '{"files":[{"mode":420,"name":"x","size":1}]}'.encode("utf-16-le"),
    "bom": b'\xef\xbb\xbf{"files":[{"mode":420,"name":"x","size":1}]}',
    "top-level-array": b'[{"mode":420,"name":"x","size":1}]',
    "extra-member": b'{"files":[{"mode":420,"name":"x","size":1}],"x":1}',
    "bool-size": b'{"files":[{"mode":420,"name":"x","size":true}]}',
    "whitespace": b'{"files": [{"mode":420,"name":"x","size":1}]}',
    "unsorted": b'{"files":[{"name":"x","mode":420,"size":1}]}',
    "leading-zero": b'{"files":[{"mode":0420,"name":"x","size":1}]}',
    "minus-zero": b'{"files":[{"mode":-0,"name":"x","size":1}]}',
    "trailing-garbage": b'{"files":[{"mode":420,"name":"x","size":1}]}\x00',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_manifest_is_the_one_open_error_and_writes_nothing(
    tmp_path: Path, body: bytes
) -> None:
    dest = tmp_path / "out"
    with pytest.raises(OpenError) as info:
        _open_raw(body, b"x", dest)
    assert type(info.value) is OpenError
    assert str(info.value) == OpenError.MESSAGE
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_decode_refuses_hostile_json_with_its_own_error(body: bytes) -> None:
    with pytest.raises(ManifestFormatError):
        decode(body)


def test_an_empty_file_list_opens_to_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    _open_raw(b'{"files":[]}', b"", dest)
    assert list(dest.iterdir()) == []


def test_a_name_with_a_quote_is_escaped_canonically() -> None:
    body = encode([FileEntry('say "hi".txt', 1)])[4:]
    assert body == b'{"files":[{"mode":420,"name":"say \\"hi\\".txt","size":1}]}'
    assert decode(body) == [FileEntry('say "hi".txt', 1)]


NAMES = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="/\\\u2028\u2029\u061c\u200e\u200f",
    ),
    min_size=1,
    max_size=30,
).filter(lambda n: n not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, st.integers(0, 2**53 - 1), st.integers(0, 0o777)), max_size=5))
def test_decode_inverts_encode_and_refuses_any_other_bytes(
    files: list[tuple[str, int, int]],
) -> None:
    entries = [FileEntry(n, s, m) for n, s, m in files]
    body = json.dumps(
        {"files": [{"mode": e.mode, "name": e.name, "size": e.size} for e in entries]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert decode(body) == entries  # names are judged apart from the JSON
    spaced = body.replace(b":", b": ", 1)
    with pytest.raises(ManifestFormatError):
        decode(spaced)


def test_unsafe_path_error_is_an_open_error() -> None:
    """The README's hierarchy: every failure to open is an OpenError; an unsafe
    name (found only once the sender's signature checked) is one kind of it."""
    assert issubclass(UnsafePathError, OpenError)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text(max_size=8)
    | st.sampled_from(["x", "a/b", "../x", "\ud800", "\x9b"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
ENTRY = st.fixed_dictionaries({"mode": JSON, "name": JSON, "size": JSON})


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.builds(lambda files: {"files": files}, st.lists(ENTRY, max_size=3)),
        JSON,
    )
)
def test_whatever_a_sender_puts_in_the_manifest_is_opened_or_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, manifest: object
) -> None:
    """Fuzz: the outcome is success, the one OpenError, or an UnsafePathError
    after the trailer checked; never another exception, never a leftover."""
    if isinstance(manifest, bytes):
        body = manifest
    else:
        try:
            body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (ValueError, TypeError):
            return
        body = body.encode("utf-8", "surrogatepass")
    if not body:
        body = b"{}"
    root = tmp_path_factory.mktemp("fuzz")
    dest = root / "out"
    failure: OpenError | None = None
    try:
        _open_raw(body, b"", dest)
    except OpenError as exc:  # the one OpenError, or an UnsafePathError (after the trailer)
        failure = exc
    if failure is not None:
        assert type(failure) in (OpenError, UnsafePathError)
        assert list(root.iterdir()) == []

"""The header is parsed strictly and canonically, and every damaged byte is caught."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.deposit import Mode
from client.errors import OpenError
from client.format.header import (
    CHUNK_SIZE,
    MAGIC,
    TAG_SIZE,
    TRAILER_SIZE,
    FormatError,
    Header,
    Stanza,
    parse_header,
)
from tests.client.consign_helpers import RECEIVERS, open_bytes, seal_bytes

ESCROWS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)


@st.composite
def headers(draw: st.DrawFn) -> Header:
    mode = draw(st.sampled_from(list(Mode)))
    n = draw(st.integers(1, 6)) if mode is Mode.SPLIT else 0
    ids = draw(st.lists(st.binary(min_size=8, max_size=8), min_size=n, max_size=n, unique=True))
    return Header(
        consignment_id=draw(st.binary(min_size=16, max_size=16)),
        escrow=draw(ESCROWS),
        mode=mode,
        policy_digest=draw(st.binary(min_size=32, max_size=32)),
        sender_key=draw(st.binary(min_size=32, max_size=32)),
        payload_salt=draw(st.binary(min_size=16, max_size=16)),
        payload_size=draw(st.integers(1, 1 << 60)),
        stanzas=tuple(Stanza(i, draw(st.binary(min_size=80, max_size=80))) for i in ids),
        mac=draw(st.binary(min_size=32, max_size=32)),
        signature=draw(st.binary(min_size=64, max_size=64)),
    )


@settings(max_examples=300)
@given(headers())
def test_parse_inverts_serialize(header: Header) -> None:
    raw = header.serialize()
    src = io.BytesIO(raw + b"payload")
    assert parse_header(src) == header
    assert src.read() == b"payload"


@settings(max_examples=500)
@given(headers(), st.data())
def test_serialize_of_parse_is_identity_or_the_bytes_are_refused(
    header: Header, data: st.DataObject
) -> None:
    """Malleability: any edit of a header either fails to parse or changes the parsed value."""
    raw = bytearray(header.serialize())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    try:
        parsed = parse_header(io.BytesIO(bytes(raw)))
    except FormatError:
        return
    assert parsed.serialize() == bytes(raw)
    assert parsed != header


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.replace(MAGIC, b"consignment/v2", 1),
        lambda h: h.replace(MAGIC, b"Consignment/v1", 1),
        lambda h: h.replace(b"mode split", b"mode other", 1),
        lambda h: h.replace(b"\nid ", b"\nid  ", 1),
        lambda h: h.replace(b"\n", b"\r\n", 1),
        lambda h: h.replace(b"-> x25519 ", b"-> x448 ", 1),
        lambda h: h[: h.index(b"--- ")] + h[h.index(b"--- ") :].replace(b"\n", b"=\n", 1),
        lambda h: h[: h.index(b"\nsig ")] + b"\n",
        lambda h: h.replace(b"payload ", b"payload  ", 1),
    ],
    ids=[
        "unknown-version",
        "magic-case",
        "unknown-mode",
        "double-space",
        "crlf",
        "unknown-stanza",
        "padded-b64",
        "missing-sig",
        "extra-space",
    ],
)
def test_non_canonical_or_unknown_headers_are_refused(edit: object) -> None:
    sealed, _ = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    header_end = sealed.index(b"\nsig ") + 1
    header_end = sealed.index(b"\n", header_end) + 1
    edited = edit(sealed[:header_end])  # type: ignore[operator]
    with pytest.raises(FormatError):
        parse_header(io.BytesIO(edited))


def test_payload_size_leading_zero_is_refused() -> None:
    sealed, _ = seal_bytes({"f": b"x"}, RECEIVERS[:1])
    line_start = sealed.index(b"\npayload ") + 1
    salt_end = sealed.index(b" ", line_start + len(b"payload "))
    edited = sealed[: salt_end + 1] + b"0" + sealed[salt_end + 1 :]
    with pytest.raises(FormatError):
        parse_header(io.BytesIO(edited))


@pytest.mark.parametrize("mode", list(Mode))
def test_every_single_bit_flip_fails_to_open(mode: Mode) -> None:
    sealed, deposit = seal_bytes({"f": b"small consignment"}, RECEIVERS[:2], mode)
    for bit in range(len(sealed) * 8):
        flipped = bytearray(sealed)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(OpenError):
            open_bytes(bytes(flipped), RECEIVERS[1], deposit)


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes], bytes]:
    header = parse_header(io.BytesIO(sealed))
    head = header.serialize()
    body = sealed[len(head) : len(sealed) - TRAILER_SIZE]
    size = CHUNK_SIZE + TAG_SIZE
    return head, [body[i : i + size] for i in range(0, len(body), size)], sealed[-TRAILER_SIZE:]


def test_three_chunk_layout() -> None:
    sealed, _ = seal_bytes({"f": bytes(2 * CHUNK_SIZE)}, RECEIVERS[:1])
    _, chunks, _ = _chunks(sealed)
    assert len(chunks) == 3
    assert all(len(c) == CHUNK_SIZE + TAG_SIZE for c in chunks[:2])


def _damaged(kind: str) -> bytes:
    sealed, _ = _BIG
    head, chunks, trailer = _chunks(sealed)
    if kind == "truncated-mid-chunk":
        return sealed[: len(head) + CHUNK_SIZE // 2]
    if kind == "truncated-at-chunk-boundary":
        return head + chunks[0] + chunks[1]
    if kind == "truncated-trailer":
        return sealed[:-1]
    if kind == "truncated-header":
        return sealed[: len(head) - 5]
    if kind == "empty":
        return b""
    if kind == "extended-byte":
        return sealed + b"\x00"
    if kind == "extended-chunk":
        return head + b"".join(chunks) + chunks[-1] + trailer
    if kind == "reordered":
        return head + chunks[1] + chunks[0] + chunks[2] + trailer
    if kind == "duplicated-chunk":
        return head + chunks[0] + chunks[0] + chunks[2] + trailer
    if kind == "dropped-last-chunk":
        return head + chunks[0] + chunks[1] + trailer
    if kind == "last-chunk-replaced-by-middle":
        return head + chunks[0] + chunks[2] + trailer
    raise AssertionError(kind)


_BIG = seal_bytes({"f": bytes(range(256)) * (2 * CHUNK_SIZE // 256 + 1)}, RECEIVERS[:1])


@pytest.mark.parametrize(
    "kind",
    [
        "truncated-mid-chunk",
        "truncated-at-chunk-boundary",
        "truncated-trailer",
        "truncated-header",
        "empty",
        "extended-byte",
        "extended-chunk",
        "reordered",
        "duplicated-chunk",
        "dropped-last-chunk",
        "last-chunk-replaced-by-middle",
    ],
)
def test_truncation_extension_and_reordering_fail_with_the_one_error(kind: str) -> None:
    with pytest.raises(OpenError) as info:
        open_bytes(_damaged(kind), RECEIVERS[0], _BIG[1])
    assert str(info.value) == OpenError.MESSAGE

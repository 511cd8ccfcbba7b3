"""A reader of version 1 consignments written from docs/format.md alone, without
the client's code (only `cryptography`, `blake3` and the standard library), so
the tests can show the spec is exact: it opens every vector the implementation
opens, to the same bytes, and refuses every one it refuses, for the same reason
(`Refused` with "open_error" or "unsafe_path").

Not a test module (test_spec_reader.py runs it). It must never import `client`
or `broker`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import unicodedata
from typing import Any

import blake3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHUNK = 65536


class Refused(Exception):
    def __init__(self, outcome: str, why: str) -> None:
        super().__init__(f"{outcome}: {why}")
        self.outcome = outcome


def _fail(why: str) -> Refused:
    return Refused("open_error", why)


# -- primitives as the spec names them ----------------------------------------------


def hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def hpke_open(sk: X25519PrivateKey, enc_ct: bytes, info: bytes) -> bytes:
    """RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    ChaCha20-Poly1305, single-shot Open with empty associated data."""
    enc, ct = enc_ct[:32], enc_ct[32:]
    kem = b"KEM" + (0x0020).to_bytes(2, "big")
    suite = b"HPKE" + (0x0020).to_bytes(2, "big") + (1).to_bytes(2, "big") + (3).to_bytes(2, "big")

    def lx(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)

    def le(suite_id: bytes, prk: bytes, label: bytes, info_: bytes, n: int) -> bytes:
        return _expand(prk, n.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info_, n)

    dh = sk.exchange(X25519PublicKey.from_public_bytes(enc))
    pk_r = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    prk = lx(kem, b"", b"eae_prk", dh)
    shared = le(kem, prk, b"shared_secret", enc + pk_r, 32)
    context = b"\x00" + lx(suite, b"", b"psk_id_hash", b"") + lx(suite, b"", b"info_hash", info)
    secret = lx(suite, shared, b"secret", b"")
    key = le(suite, secret, b"key", context, 32)
    nonce = le(suite, secret, b"base_nonce", context, 12)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, b"")


def unb64(text: bytes, n: int) -> bytes:
    if not re.fullmatch(rb"[A-Za-z0-9+/]+", text):
        raise _fail("not base64")
    raw = base64.b64decode(text + b"=" * (-len(text) % 4))
    if len(raw) != n or base64.b64encode(raw).rstrip(b"=") != text:
        raise _fail("base64 not canonical")
    return raw


# -- the header -----------------------------------------------------------------------


def _lines(data: bytes) -> tuple[list[bytes], int]:
    lines, pos = [], 0
    while True:
        end = data.find(b"\n", pos, pos + 256)
        if end < 0:
            raise _fail("line missing or over 256 bytes with its LF")
        line = data[pos:end]
        lines.append(line)
        pos = end + 1
        if line.startswith(b"sig "):
            return lines, pos


def _fields(line: bytes, name: bytes, n: int) -> list[bytes]:
    parts = line.split(b" ")
    if parts[0] != name or len(parts) != n + 1 or b"\r" in line:
        raise _fail(f"bad {name!r} line")
    return parts[1:]


def read(data: bytes, receiver: bytes, sender: bytes, release: dict[str, Any]) -> dict[str, bytes]:
    lines, end = _lines(data)
    if len(lines) < 9 or lines[0] != b"consignment/v1":
        raise _fail("not version 1")
    (cid_hex,) = _fields(lines[1], b"id", 1)
    if not re.fullmatch(rb"[0-9a-f]{32}", cid_hex):
        raise _fail("id")
    cid = bytes.fromhex(cid_hex.decode())
    (escrow,) = _fields(lines[2], b"escrow", 1)
    (mode,) = _fields(lines[3], b"mode", 1)
    policy = unb64(_fields(lines[4], b"policy", 1)[0], 32)
    sender_key = unb64(_fields(lines[5], b"sender", 1)[0], 32)
    salt_b64, size_text = _fields(lines[6], b"payload", 2)
    salt = unb64(salt_b64, 16)
    if not re.fullmatch(rb"[1-9][0-9]*", size_text) or int(size_text) > 2**60:
        raise _fail("payload size")
    size = int(size_text)
    stanzas = [_fields(x, b"->", 3) for x in lines[7:-2]]
    (mac_b64,) = _fields(lines[-2], b"---", 1)
    mac = unb64(mac_b64, 32)
    signature = unb64(_fields(lines[-1], b"sig", 1)[0], 64)
    mac_input = data[: data.index(b"\n---") + 4]
    if sender_key != sender:
        raise _fail("sender")
    try:
        Ed25519PublicKey.from_public_bytes(sender).verify(
            signature, b"consignment/v1 header signature\x00" + mac_input + b" " + mac_b64 + b"\n"
        )
    except Exception as exc:
        raise _fail("header signature") from exc
    digest = base64.b64decode(release["policy_digest"])
    part = base64.b64decode(release["key_part"])
    if (release["consignment_id"], release["mode"], release["escrow"], digest) != (
        cid_hex.decode(),
        mode.decode(),
        escrow.decode(),
        policy,
    ):
        raise _fail("the release is not for this header")
    sk = X25519PrivateKey.from_private_bytes(receiver)
    try:
        if mode == b"split":
            pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            kid = hashlib.sha256(b"consignment/v1 key id\x00" + pk).digest()[:8]
            (wrapped,) = [
                unb64(w, 80) for t, k, w in stanzas if t == b"x25519" and unb64(k, 8) == kid
            ]
            k1 = hpke_open(sk, wrapped, b"consignment/v1 K1\x00" + cid + digest)
            if len(part) != 32:
                raise _fail("K2 length")
            key = hkdf(k1 + part, cid, b"consignment/v1 content key\x01" + digest)
        elif mode == b"escrowed" and not stanzas:
            k3 = hpke_open(sk, part, b"consignment/v1 K3\x00" + cid + digest)
            key = hkdf(k3, cid, b"consignment/v1 content key\x02" + digest)
        else:
            raise _fail("mode")
    except Refused:
        raise
    except Exception as exc:
        raise _fail("key part") from exc
    mac_key = hkdf(key, None, b"consignment/v1 header mac")
    if not hmac.compare_digest(hmac.new(mac_key, mac_input, hashlib.sha256).digest(), mac):
        raise _fail("header MAC")
    return _payload(data, end, size, key, salt, sender)


def _payload(
    data: bytes, start: int, size: int, key: bytes, salt: bytes, sender: bytes
) -> dict[str, bytes]:
    aead = AESGCM(hkdf(key, salt, b"consignment/v1 payload"))
    n = -(-size // CHUNK)
    plain, pos = b"", start
    for i in range(n):
        m = min(CHUNK, size - i * CHUNK)
        nonce = i.to_bytes(11, "big") + (b"\x01" if i == n - 1 else b"\x00")
        try:
            plain += aead.decrypt(nonce, data[pos : pos + m + 16], None)
        except Exception as exc:
            raise _fail("chunk") from exc
        pos += m + 16
    trailer = data[pos:]
    if len(trailer) != 96:
        raise _fail("the file does not end with the trailer")
    commitment, signature = trailer[:32], trailer[32:]
    try:
        Ed25519PublicKey.from_public_bytes(sender).verify(
            signature,
            b"consignment/v1 trailer signature\x00"
            + blake3.blake3(data[:pos]).digest()
            + commitment,
        )
    except Exception as exc:
        raise _fail("trailer signature") from exc
    ckey = hkdf(key, None, b"consignment/v1 plaintext commitment")
    if not hmac.compare_digest(blake3.blake3(plain, key=ckey).digest(), commitment):
        raise _fail("commitment")
    return _files(plain)


# -- the manifest and names ---------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _files(plain: bytes) -> dict[str, bytes]:
    length = int.from_bytes(plain[:4], "big")
    body = plain[4 : 4 + length]
    try:
        manifest = json.loads(body.decode("utf-8"), parse_float=_no, parse_constant=_no)
        entries = manifest["files"]
        ok = set(manifest) == {"files"} and all(
            set(e) == {"mode", "name", "size"}
            and type(e["mode"]) is int
            and 0 <= e["mode"] <= 0o777
            and type(e["size"]) is int
            and 0 <= e["size"] <= 2**53 - 1
            and isinstance(e["name"], str)
            for e in entries
        )
        canonical = _canonical(manifest) == body
        body.decode("utf-8").encode("utf-8")
        for e in entries:
            e["name"].encode("utf-8")
    except (ValueError, KeyError, TypeError, RecursionError, UnicodeError) as exc:
        raise _fail("manifest") from exc
    if not ok or not canonical or 4 + length + sum(e["size"] for e in entries) != len(plain):
        raise _fail("manifest")
    _names([e["name"] for e in entries])
    files, pos = {}, 4 + length
    for e in entries:
        files[e["name"]] = plain[pos : pos + e["size"]]
        pos += e["size"]
    return files


def _no(text: str) -> Any:
    raise ValueError(text)


_BAD = set("\\\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _names(names: list[str]) -> None:
    def unsafe(why: str) -> Refused:
        return Refused("unsafe_path", why)

    folds: set[str] = set()
    for name in names:
        raw = name.encode("utf-8")
        parts = name.split("/")
        if not 0 < len(raw) <= 1023 or any(len(p.encode()) > 255 for p in parts):
            raise unsafe("length")
        if name[0] == "/" or name[1:2] == ":":
            raise unsafe("absolute")
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in _BAD for c in name):
            raise unsafe("character")
        if unicodedata.normalize("NFC", name) != name:
            raise unsafe("not NFC")
        if any(p in ("", ".", "..") for p in parts):
            raise unsafe("component")
        nfd = unicodedata.normalize("NFD", name)
        fold = unicodedata.normalize("NFD", nfd.upper().casefold())
        if fold in folds:
            raise unsafe("collision")
        folds.add(fold)
    for fold in folds:
        parts = fold.split("/")
        if any("/".join(parts[:i]) in folds for i in range(1, len(parts))):
            raise unsafe("file and directory")

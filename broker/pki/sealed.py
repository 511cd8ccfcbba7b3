"""Passphrase-sealed files: identity files and the escrow's private keys.

Construction (no new primitive): scrypt (RFC 7914) derives a 32-byte key from the
passphrase and a random 16-byte salt; ChaCha20-Poly1305 (RFC 8439) encrypts the
contents with a random nonce, the canonical JSON of the header as associated
data. An unkeyed SHA-256 checksum over header and ciphertext tells a damaged
file from a wrong passphrase; it adds no security, the AEAD does.

File: canonical JSON (broker.canonical_json) of
{"aead","checksum","ciphertext","format","kdf":{"log_n","name","p","r","salt"},
"kind","nonce","version"} followed by one newline (LF); `unseal` refuses any
other form, and a plaintext that must be JSON is parsed as canonical JSON too.
This module must never write a secret anywhere but inside the ciphertext, nor
put one in an error message.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from broker.canonical import b64, canonical_json, parse_canonical_json, unb64
from broker.errors import EnvelopeError, IdentityFileError

__all__ = [
    "DEFAULT_LOG_N",
    "seal",
    "unseal",
]

FORMAT = "consign-sealed"
VERSION = 1
#: scrypt cost: N = 2**17, r = 8 (128 MiB, about 0.35 s here), as age recommends.
DEFAULT_LOG_N = 17
#: Reading accepts 2**14 (tests) up to 2**20; beyond that a file could exhaust memory.
MIN_LOG_N, MAX_LOG_N = 14, 20
_R, _P = 8, 1
MAX_FILE_BYTES = 1 << 20


#: Where each kind of file's passphrase comes from, for the wrong-passphrase hint.
_PASSPHRASE_HINTS: Final[dict[str, str]] = {
    "escrow-key": "check the escrow passphrase (CONSIGN_ESCROW_PASSPHRASE or "
    "--escrow-passphrase-file)",
    "escrow-master-keyring": "check the escrow passphrase (CONSIGN_ESCROW_PASSPHRASE or "
    "--escrow-passphrase-file)",
    "identity": "check the identity passphrase (CONSIGN_IDENTITY_PASSPHRASE or --passphrase-file)",
}


def _kdf(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log_n, r=_R, p=_P).derive(passphrase)


def _checksum(header: dict[str, Any], ciphertext: str) -> str:
    return hashlib.sha256(canonical_json({"header": header, "ciphertext": ciphertext})).hexdigest()


def seal(plaintext: bytes, passphrase: bytes, *, kind: str, log_n: int = DEFAULT_LOG_N) -> bytes:
    """Encrypt `plaintext` under `passphrase`; return the file's bytes."""
    if not passphrase:
        raise IdentityFileError("malformed", "refusing an empty passphrase")
    salt, nonce = os.urandom(16), os.urandom(12)
    header: dict[str, Any] = {
        "aead": "chacha20-poly1305",
        "format": FORMAT,
        "kdf": {"log_n": log_n, "name": "scrypt", "p": _P, "r": _R, "salt": b64(salt)},
        "kind": kind,
        "nonce": b64(nonce),
        "version": VERSION,
    }
    key = _kdf(passphrase, salt, log_n)
    ciphertext = b64(ChaCha20Poly1305(key).encrypt(nonce, plaintext, canonical_json(header)))
    document = {**header, "ciphertext": ciphertext, "checksum": _checksum(header, ciphertext)}
    return canonical_json(document) + b"\n"


def _malformed(kind: str, detail: str) -> IdentityFileError:
    return IdentityFileError(
        "malformed",
        f"not a {kind} file ({detail})",
        "check the file name; the file must be the one `consign` wrote",
    )


def _unb64(value: object, kind: str, field: str) -> bytes:
    try:
        return unb64(value, field)
    except ValueError as exc:
        raise _malformed(kind, str(exc)) from exc


def unseal(data: bytes, passphrase: bytes, *, kind: str) -> bytes:
    """Decrypt a sealed file of the given kind. Raises IdentityFileError with reason
    "malformed", "damaged" or "wrong_passphrase"."""
    if len(data) > MAX_FILE_BYTES:
        raise _malformed(kind, "too large")
    # Exactly what `seal` writes: one line of canonical JSON and one LF.
    if not data.endswith(b"\n"):
        raise _malformed(kind, "not one line of canonical JSON ending in a newline")
    try:
        document = parse_canonical_json(data[:-1], "it")
    except EnvelopeError as exc:
        raise _malformed(kind, exc.message) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _malformed(kind, "no consign-sealed header")
    if document.get("version") != VERSION or document.get("kind") != kind:
        raise _malformed(kind, f"version/kind is not {VERSION}/{kind}")
    header = {k: v for k, v in document.items() if k not in ("ciphertext", "checksum")}
    ciphertext_text = document.get("ciphertext")
    try:
        expected = _checksum(header, str(ciphertext_text))
    except ValueError as exc:
        raise _malformed(kind, "header is not plain JSON") from exc
    if document.get("checksum") != expected:
        raise IdentityFileError(
            "damaged",
            f"{kind} file is damaged (checksum mismatch)",
            "restore the file from a copy or ask for a new one",
        )
    kdf = header.get("kdf")
    if (
        header.get("aead") != "chacha20-poly1305"
        or not isinstance(kdf, dict)
        or kdf.get("name") != "scrypt"
        or (kdf.get("r"), kdf.get("p")) != (_R, _P)
        or type(kdf.get("log_n")) is not int
        or not MIN_LOG_N <= kdf["log_n"] <= MAX_LOG_N
    ):
        raise _malformed(kind, "unsupported key derivation or cipher")
    salt = _unb64(kdf.get("salt"), kind, "salt")
    nonce = _unb64(header.get("nonce"), kind, "nonce")
    ciphertext = _unb64(ciphertext_text, kind, "ciphertext")
    if len(nonce) != 12 or len(salt) < 16:
        raise _malformed(kind, "bad nonce or salt length")
    key = _kdf(passphrase, salt, kdf["log_n"])
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, canonical_json(header))
    except InvalidTag as exc:
        raise IdentityFileError(
            "wrong_passphrase",
            f"wrong passphrase for this {kind} file",
            _PASSPHRASE_HINTS.get(
                kind, "check the passphrase (its environment variable or --passphrase-file)"
            ),
        ) from exc

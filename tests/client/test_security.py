"""Security claims, tried and failed: each part alone, the escrow's whole deposit,
swapped policies and stanzas, forged signatures, and names that escape the target."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.deposit import ControlAttributes, KeyRelease, Mode
from client.consignment import Source, _content_key, seal, unseal
from client.errors import OpenError, SealError, UnsafePathError
from client.format import keys as _keys
from client.format import stream as _stream
from client.format.header import TRAILER_SIZE, Header, parse_header
from client.format.manifest import FileEntry, encode
from tests.client.consign_helpers import (
    ALICE,
    ESCROW,
    RECEIVERS,
    open_bytes,
    party,
    seal_bytes,
    seal_raw_manifest,
)
from tests.vectors.common import resign, resign_all

BOB, CAROL = RECEIVERS[0], RECEIVERS[1]


def _open(sealed: bytes, identity: X25519PrivateKey, release: KeyRelease, dest: Path) -> None:
    unseal(
        io.BytesIO(sealed),
        dest,
        identity=identity,
        release=release,
        sender_key=ALICE.signing.public_key(),
    )


def _assert_refused(
    sealed: bytes, identity: X25519PrivateKey, release: KeyRelease, tmp: Path
) -> None:
    dest = tmp / "out"
    dest.mkdir(exist_ok=True)
    before = sorted(dest.rglob("*"))
    with pytest.raises(OpenError) as info:
        _open(sealed, identity, release, dest)
    assert str(info.value) == OpenError.MESSAGE  # the same words whatever failed
    assert sorted(dest.rglob("*")) == before  # and nothing written


def test_k1_alone_cannot_open(tmp_path: Path) -> None:
    """The receiver's key without the escrow's part: any guess at K2 fails."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    real = deposit.release_for("bob")
    for guess in (bytes(32), os.urandom(32)):
        _assert_refused(
            sealed, BOB.encryption, real.model_copy(update={"key_part": guess}), tmp_path
        )


def test_k2_alone_cannot_open(tmp_path: Path) -> None:
    """The escrow's part without the receiver's private key."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    _assert_refused(sealed, X25519PrivateKey.generate(), deposit.release_for("bob"), tmp_path)


@pytest.mark.parametrize("mode", list(Mode))
def test_the_whole_deposit_cannot_open(tmp_path: Path, mode: Mode) -> None:
    """Everything the escrow holds, with keys of the escrow's own, opens nothing."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB, CAROL], mode)
    escrow_key = X25519PrivateKey.generate()
    for name in ("bob", "carol"):
        _assert_refused(sealed, escrow_key, deposit.release_for(name), tmp_path)
    header = parse_header(io.BytesIO(sealed))
    # Deriving the content key from the deposit alone: K2 with no K1, or a
    # wrapped K3 treated as a key, never verifies the header MAC.
    candidates = []
    if mode is Mode.SPLIT:
        assert deposit.escrow_key is not None
        candidates = [deposit.escrow_key + bytes(32), bytes(32) + deposit.escrow_key]
    else:
        candidates = [w[:32] for w in deposit.wrapped_keys.values()]
    for parts in candidates:
        key = _keys.content_key(mode, parts, header.consignment_id, deposit.policy_digest)
        assert not _keys.verify_header_mac(key, header.mac_input(), header.mac)
    assert b"secret" not in deposit.model_dump_json().encode()


def test_a_changed_policy_changes_the_key() -> None:
    parts, cid = os.urandom(64), os.urandom(16)
    base = seal_bytes({"f": b"x"}, [BOB])[1].policy
    stricter = base.model_copy(update={"attributes": ControlAttributes(max_releases=1)})
    other_escrow = base.model_copy(update={"escrow": "amqp://evil.example"})
    digests = {p.digest() for p in (base, stricter, other_escrow)}
    assert len(digests) == 3
    keys = {_keys.content_key(Mode.SPLIT, parts, cid, d) for d in digests}
    assert len(keys) == 3
    assert _keys.content_key(Mode.SPLIT, parts, os.urandom(16), base.digest()) not in keys


def test_a_policy_swapped_at_the_escrow_opens_nothing(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    swapped = deposit.policy.model_copy(update={"attributes": ControlAttributes(max_releases=99)})
    release = deposit.release_for("bob").model_copy(update={"policy_digest": swapped.digest()})
    _assert_refused(sealed, BOB.encryption, release, tmp_path)


def test_a_policy_swapped_in_the_file_opens_nothing(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    header = parse_header(io.BytesIO(sealed))
    forged = dataclasses.replace(header, policy_digest=os.urandom(32))
    forged = dataclasses.replace(forged, signature=ALICE.signing.sign(forged.signed_input()))
    tampered = forged.serialize() + sealed[len(header.serialize()) :]
    _assert_refused(tampered, BOB.encryption, deposit.release_for("bob"), tmp_path)


def test_a_second_receiver_cannot_use_the_first_receivers_stanza(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB, CAROL])
    header = parse_header(io.BytesIO(sealed))
    bob_stanza, carol_stanza = header.stanzas
    # Relabel Bob's wrapped K1 as Carol's (the sender re-signs, so only HPKE stands).
    relabelled = dataclasses.replace(
        header, stanzas=(dataclasses.replace(bob_stanza, key_id=carol_stanza.key_id),)
    )
    relabelled = dataclasses.replace(
        relabelled, signature=ALICE.signing.sign(relabelled.signed_input())
    )
    tampered = relabelled.serialize() + sealed[len(header.serialize()) :]
    _assert_refused(tampered, CAROL.encryption, deposit.release_for("carol"), tmp_path)


def test_stanza_moved_to_another_consignment_opens_nothing(tmp_path: Path) -> None:
    first, _ = seal_bytes({"f": b"one"}, [BOB])
    second, deposit2 = seal_bytes({"f": b"two"}, [BOB])
    h1, h2 = (parse_header(io.BytesIO(x)) for x in (first, second))
    moved = dataclasses.replace(h2, stanzas=h1.stanzas)
    moved = dataclasses.replace(moved, signature=ALICE.signing.sign(moved.signed_input()))
    tampered = moved.serialize() + second[len(h2.serialize()) :]
    _assert_refused(tampered, BOB.encryption, deposit2.release_for("bob"), tmp_path)


def test_wrong_receiver_key_and_wrong_k2(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    _assert_refused(sealed, CAROL.encryption, deposit.release_for("bob"), tmp_path)
    other = seal_bytes({"f": b"other"}, [BOB])[1]
    wrong_k2 = deposit.release_for("bob").model_copy(update={"key_part": other.escrow_key})
    _assert_refused(sealed, BOB.encryption, wrong_k2, tmp_path)


def test_release_for_another_consignment_is_refused(tmp_path: Path) -> None:
    sealed, _ = seal_bytes({"f": b"secret"}, [BOB])
    _, other = seal_bytes({"f": b"secret"}, [BOB])
    _assert_refused(sealed, BOB.encryption, other.release_for("bob"), tmp_path)


def test_forged_signature_and_wrong_sender(tmp_path: Path) -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    header = parse_header(io.BytesIO(sealed))
    mallory = party("mallory")
    forged: Header = dataclasses.replace(
        header, signature=mallory.signing.sign(header.signed_input())
    )
    tampered = forged.serialize() + sealed[len(header.serialize()) :]
    _assert_refused(tampered, BOB.encryption, deposit.release_for("bob"), tmp_path)
    # Mallory seals with her own key: opening while expecting Alice refuses.
    mallory_sealed, mallory_deposit = seal_bytes({"f": b"fake"}, [BOB], sender=mallory)
    _assert_refused(mallory_sealed, BOB.encryption, mallory_deposit.release_for("bob"), tmp_path)


def test_a_file_signed_again_unchanged_still_opens(tmp_path: Path) -> None:
    """The control for the two below: signing both parts again changes nothing."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    again = resign_all(sealed)
    assert again == sealed  # Ed25519 is deterministic
    _open(again, BOB.encryption, deposit.release_for("bob"), tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == b"secret"


def test_a_validly_signed_header_with_a_wrong_mac_is_refused(tmp_path: Path) -> None:
    """Only the header MAC is wrong: both signatures verify and the key is right."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB, CAROL])
    forged = resign_all(sealed, lambda h: dataclasses.replace(h, mac=bytes(32)))
    for receiver in (BOB, CAROL):
        _assert_refused(forged, receiver.encryption, deposit.release_for(receiver.name), tmp_path)


def test_a_validly_signed_trailer_with_a_wrong_commitment_is_refused(tmp_path: Path) -> None:
    """Only the plaintext commitment is wrong: the trailer signature covers it and
    verifies, the payload decrypts; nothing may be written."""
    sealed, deposit = seal_bytes({"f": b"secret", "g": b"more"}, [BOB])
    forged = resign_all(sealed, commitment=lambda c: bytes(a ^ 0xFF for a in c))
    _assert_refused(forged, BOB.encryption, deposit.release_for("bob"), tmp_path)


def test_the_header_signature_is_checked_before_any_key_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/format.md "Opening, in order": step 2 (signature) before step 3 (unwrap).
    The trailer signature would refuse a forged header later; this proves no key
    material is touched for one."""
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    forged = resign(sealed, lambda h: h, signer=party("mallory"))
    used: list[object] = []
    recover = _keys.recover_content_key

    def spy(*args: object) -> bytes:
        used.append(args)
        return recover(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_keys, "recover_content_key", spy)
    _assert_refused(forged, BOB.encryption, deposit.release_for("bob"), tmp_path)
    assert used == []
    _open(sealed, BOB.encryption, deposit.release_for("bob"), tmp_path / "control")
    assert len(used) == 1


def test_a_receiver_cannot_forge_content_under_the_senders_header(tmp_path: Path) -> None:
    """Bob knows the content key; re-encrypting other content fails the trailer signature."""
    sealed, deposit = seal_bytes({"f": b"pay bob 10"}, [BOB, CAROL])
    header = parse_header(io.BytesIO(sealed))
    key = _content_key(header, BOB.encryption, deposit.release_for("bob"))
    payload = encode([FileEntry("f", 10)]) + b"pay bob 99"
    out = io.BytesIO()
    _stream.encrypt_payload(
        _keys.payload_key(key, header.payload_salt),
        len(payload),
        lambda v: v.__setitem__(slice(None), payload[: len(v)]),
        out,
        blake3.blake3(),
        blake3.blake3(),
    )
    tampered = header.serialize() + out.getvalue() + sealed[-TRAILER_SIZE:]
    _assert_refused(tampered, CAROL.encryption, deposit.release_for("carol"), tmp_path)


# -- names ----------------------------------------------------------------------


def _manifest(names: list[str]) -> tuple[bytes, bytes]:
    body = json.dumps(
        {"files": [{"mode": 420, "name": n, "size": 1} for n in names]},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return len(body).to_bytes(4, "big") + body, b"x" * len(names)


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/.",
        "C:evil",
        "a\\b",
        "a\x00b",
        "",
    ],
)
def test_unsafe_names_are_refused_on_open_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    manifest, payload = _manifest([name])
    sealed, deposit = seal_raw_manifest(manifest, payload, BOB)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafePathError):
        _open(sealed, BOB.encryption, deposit.release_for("bob"), dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape").exists()


def test_unsafe_names_are_refused_on_seal(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="refusing file name"):
        seal(
            [Source("../x", io.BytesIO(b"x"), 1)],
            io.BytesIO(),
            sender=ALICE.sender,
            receivers=[BOB.recipient],
            escrow=ESCROW,
        )


@pytest.mark.parametrize("names", [["a", "a"], ["a", "a/b"]])
def test_duplicate_and_file_versus_directory_names_are_refused(
    tmp_path: Path, names: list[str]
) -> None:
    manifest, payload = _manifest(names)
    sealed, deposit = seal_raw_manifest(manifest, payload, BOB)
    with pytest.raises(UnsafePathError):
        _open(sealed, BOB.encryption, deposit.release_for("bob"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_link_in_the_target_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "docs").symlink_to(outside)
    sealed, deposit = seal_bytes({"docs/report.txt": b"x"}, [BOB])
    with pytest.raises(UnsafePathError):
        _open(sealed, BOB.encryption, deposit.release_for("bob"), dest)
    assert list(outside.iterdir()) == []


def test_an_existing_file_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "f").write_bytes(b"keep me")
    sealed, deposit = seal_bytes({"f": b"new"}, [BOB])
    with pytest.raises(UnsafePathError):
        _open(sealed, BOB.encryption, deposit.release_for("bob"), dest)
    assert (dest / "f").read_bytes() == b"keep me"
    unseal(
        io.BytesIO(sealed),
        dest,
        identity=BOB.encryption,
        release=deposit.release_for("bob"),
        sender_key=ALICE.signing.public_key(),
        overwrite=True,
    )
    assert (dest / "f").read_bytes() == b"new"


def test_a_target_symlink_file_is_never_replaced_or_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "f").symlink_to(victim)
    sealed, deposit = seal_bytes({"f": b"new"}, [BOB])
    with pytest.raises(UnsafePathError):
        unseal(
            io.BytesIO(sealed),
            dest,
            identity=BOB.encryption,
            release=deposit.release_for("bob"),
            sender_key=ALICE.signing.public_key(),
            overwrite=True,
        )
    assert victim.read_bytes() == b"untouched"


def test_sealing_a_directory_with_a_link_pointing_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"do not ship")
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"ok")
    (src / "leak").symlink_to(tmp_path / "secret")
    out = tmp_path / "c"
    with pytest.raises(SealError, match="link pointing outside"):
        seal([src], out, sender=ALICE.sender, receivers=[BOB.recipient], escrow=ESCROW)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".consign")] == []


# -- sealing errors -------------------------------------------------------------


def test_missing_input_is_a_clear_seal_error(tmp_path: Path) -> None:
    out = tmp_path / "c"
    with pytest.raises(SealError, match="cannot read"):
        seal(
            [tmp_path / "nope"], out, sender=ALICE.sender, receivers=[BOB.recipient], escrow=ESCROW
        )
    assert not out.exists()


@pytest.mark.parametrize(("declared", "actual"), [(10, 5), (5, 10)])
def test_a_source_that_changes_size_fails_and_leaves_no_output(
    tmp_path: Path, declared: int, actual: int
) -> None:
    out = tmp_path / "c"
    with pytest.raises(SealError, match="while it was being sealed"):
        seal(
            [Source("f", io.BytesIO(b"x" * actual), declared)],
            out,
            sender=ALICE.sender,
            receivers=[BOB.recipient],
            escrow=ESCROW,
        )
    assert list(tmp_path.iterdir()) == []


def test_invalid_policy_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "c"
    (tmp_path / "in").write_bytes(b"x")
    with pytest.raises(SealError, match="invalid policy"):
        seal(
            [tmp_path / "in"],
            out,
            sender=ALICE.sender,
            receivers=[BOB.recipient],
            escrow="has space",
        )
    with pytest.raises(SealError):
        seal(
            [tmp_path / "in"],
            out,
            sender=ALICE.sender,
            receivers=[BOB.recipient, BOB.recipient],
            escrow=ESCROW,
        )
    assert not out.exists()
    with pytest.raises(SealError, match="nothing to seal"):
        seal([], out, sender=ALICE.sender, receivers=[BOB.recipient], escrow=ESCROW)


def test_open_error_carries_a_hint_but_no_detail() -> None:
    sealed, deposit = seal_bytes({"f": b"secret"}, [BOB])
    with pytest.raises(OpenError) as info:
        open_bytes(sealed[:-3], BOB, deposit)
    assert info.value.hint
    assert "signature" not in str(info.value)
    assert "MAC" not in str(info.value)


def test_unsafe_names_under_a_bad_trailer_are_an_open_error_not_a_name_error(
    tmp_path: Path,
) -> None:
    """Until the trailer signature verifies, the manifest is only as authentic as K,
    which every co-receiver holds: its names must not be blamed on the sender."""
    manifest, payload = _manifest(["../escape"])
    sealed, deposit = seal_raw_manifest(manifest, payload, BOB)
    forged = bytearray(sealed)
    forged[-1] ^= 1  # the trailer signature
    dest = tmp_path / "out"
    with pytest.raises(OpenError):
        _open(bytes(forged), BOB.encryption, deposit.release_for("bob"), dest)
    assert not dest.exists()
    with pytest.raises(UnsafePathError):
        _open(sealed, BOB.encryption, deposit.release_for("bob"), dest)
    assert not dest.exists()


def test_the_longest_escrow_name_seals_and_opens_and_a_longer_one_is_refused() -> None:
    from client.consignment import Source

    for escrow, ok in (("e" * 248, True), ("e" * 249, False)):
        out = io.BytesIO()
        if not ok:
            with pytest.raises(SealError):
                seal(
                    [Source("f", io.BytesIO(b"x"), 1)],
                    out,
                    sender=ALICE.sender,
                    receivers=[BOB.recipient],
                    escrow=escrow,
                )
            continue
        deposit = seal(
            [Source("f", io.BytesIO(b"x"), 1)],
            out,
            sender=ALICE.sender,
            receivers=[BOB.recipient],
            escrow=escrow,
        )
        opened, _ = open_bytes(out.getvalue(), BOB, deposit)
        assert opened == b"x"


def test_a_missing_consignment_file_says_so_not_that_it_is_damaged(tmp_path: Path) -> None:
    from client.consignment import consignment_digest, inspect
    from client.errors import ClientError

    for call in (
        lambda: inspect(tmp_path / "nope"),
        lambda: consignment_digest(tmp_path / "nope"),
        lambda: unseal(
            tmp_path / "nope",
            tmp_path / "out",
            identity=BOB.encryption,
            release=seal_bytes({"f": b"x"}, [BOB])[1].release_for("bob"),
            sender_key=ALICE.signing.public_key(),
        ),
    ):
        with pytest.raises(ClientError, match="cannot read") as info:
            call()
        assert not isinstance(info.value, OpenError)
    assert not (tmp_path / "out").exists()

"""The escrow's CA, directory, revocation and trust policy on a real escrow.db."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from broker.canonical import raw_public_key
from broker.errors import BrokerError, IdentityFileError
from broker.pki.csr import build_csr, parse_csr
from broker.pki.identity import Identity, generate_keys
from broker.pki.profile import Role
from client import (
    UntrustedCertificate,
    verify_encryption_certificate,
    verify_signing_certificate,
)
from escrow_worker import (
    DirectoryError,
    Escrow,
    EscrowError,
    TrustPolicy,
    get_user,
    init_escrow,
    may_send,
    open_escrow,
    publish_crl,
    register_user,
    revoke_user,
    sign_request,
)
from escrow_worker.ca import policy as trust
from escrow_worker.ca.authority import CertificateAuthority, load_ca
from escrow_worker.ca.directory import (
    DirectoryAnswer,
    current_crl,
    lookup_encryption_certificate,
    store_certificate,
)
from escrow_worker.ca.policy import Member
from escrow_worker.handlers.common import Context, current_encryption_key
from escrow_worker.handlers.decide import DirectoryFacts
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS, LOG_N, NOW, later, make_ca, snapshot, tree

T = TypeVar("T")


def _receiver_key(
    answer: DirectoryAnswer, *, ca: x509.Certificate, now: datetime
) -> X25519PublicKey:
    """What a sender does with a directory answer: check it, then use the key."""
    return verify_encryption_certificate(
        answer.certificate, ca=ca, crl=answer.crl, now=now, name=answer.name
    )


@dataclass
class Setup:
    escrow: Escrow
    ca: CertificateAuthority

    async def run(self, job: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        return await self.escrow.store.run(job)


@pytest.fixture
async def setup(escrow_location: Location) -> AsyncIterator[Setup]:
    await init_escrow(escrow_location, "acme", ESCROW_PASS, now=NOW, log_n=LOG_N)
    async with open_escrow(escrow_location) as escrow:
        yield Setup(escrow, await load_ca(escrow, ESCROW_PASS))


async def register(s: Setup, name: str, *groups: str, now: object = NOW) -> Identity:
    saved: list[Identity] = []
    return await register_user(
        s.escrow,
        s.ca,
        name,
        groups=groups,
        now=now,
        save=saved.append,  # type: ignore[arg-type]
    )


async def test_init_creates_the_escrow(escrow_location: Location) -> None:
    certs = await init_escrow(escrow_location, "acme", ESCROW_PASS, now=NOW, log_n=LOG_N)
    if escrow_location.directory is not None:
        directory = escrow_location.directory
        files = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
        for stem in ("ca", "signing", "encryption"):
            assert files[f"{stem}.key"] == 0o600
            assert f"{stem}.pem" in files
        assert directory.stat().st_mode & 0o777 == 0o700
    async with open_escrow(escrow_location) as escrow:
        assert escrow.name == "acme"
        assert escrow.ca_certificate == certs.ca
        for stem in ("ca", "signing", "encryption"):
            assert await escrow.keystore.read(f"{stem}.pem") is not None
            key = await escrow.keystore.read(f"{stem}.key")
            assert key is not None
            assert json.loads(key)["format"] == "consign-sealed"
        if escrow.store.kind == "sqlite":
            mode = await escrow.store.run(lambda tx: tx.fetchval("PRAGMA journal_mode"))
            assert mode == "wal"
        me = await escrow.store.run(lambda tx: get_user(tx, "acme"))
        assert me is not None
        assert me.kind == "escrow"
        crl = await escrow.store.run(current_crl)
        assert list(crl) == []
    # the escrow's own certificates pass the checks, as the escrow's
    verify_signing_certificate(
        certs.signing, ca=certs.ca, crl=crl, now=NOW, name="acme", escrow=True
    )


async def test_init_refuses_an_existing_escrow(escrow_location: Location) -> None:
    await init_escrow(escrow_location, "acme", ESCROW_PASS, now=NOW, log_n=LOG_N)
    store = await escrow_location.open_store()
    try:
        before = await store.run(snapshot)
    finally:
        await store.close()
    files = tree(escrow_location.directory) if escrow_location.directory else {}
    with pytest.raises(EscrowError, match="already holds an escrow"):
        await init_escrow(escrow_location, "acme", ESCROW_PASS, now=NOW, log_n=LOG_N)
    store = await escrow_location.open_store()
    try:
        assert await store.run(snapshot) == before
    finally:
        await store.close()
    if escrow_location.directory:
        assert tree(escrow_location.directory) == files


async def test_wrong_escrow_passphrase_is_refused(setup: Setup) -> None:
    with pytest.raises(IdentityFileError) as info:
        await load_ca(setup.escrow, b"not it")
    assert info.value.reason == "wrong_passphrase"


async def test_register_then_lookup_gives_the_receivers_key(setup: Setup) -> None:
    bob = await register(setup, "bob", "partners")
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=NOW))
    key = _receiver_key(answer, ca=bob.ca_certificate, now=NOW)
    assert isinstance(key, X25519PublicKey)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert key.public_bytes(*raw) == bob.encryption_key.public_key().public_bytes(*raw)
    user = await setup.run(lambda tx: get_user(tx, "bob"))
    assert user is not None
    assert user.groups == ("partners",)
    assert {c.role.value for c in user.certificates} == {"signing", "encryption"}


async def test_register_via_csr(setup: Setup) -> None:
    keys = generate_keys("carol")
    issued = await sign_request(
        setup.escrow, setup.ca, parse_csr(build_csr(keys)), groups=("staff",), now=NOW
    )
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert issued.encryption.public_key().public_bytes(*raw) == (
        keys.encryption_key.public_key().public_bytes(*raw)
    )
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "carol", now=NOW))
    assert _receiver_key(answer, ca=issued.ca, now=NOW) is not None


async def _duplicate(s: Setup) -> None:
    await register(s, "bob")


async def _escrow_name(s: Setup) -> None:
    await register(s, "acme")


async def _bad_name(s: Setup) -> None:
    await register(s, "Bob Smith")


async def _bad_group(s: Setup) -> None:
    await register(s, "dave", "Bad Group")


async def _csr_name_mismatch(s: Setup) -> None:
    request = parse_csr(build_csr(generate_keys("eve")))
    await sign_request(s.escrow, s.ca, request, groups=(), now=NOW, expected_name="carol")


async def _failing_save(s: Setup) -> None:
    def save(identity: Identity) -> None:
        raise EscrowError("disk full")

    await register_user(s.escrow, s.ca, "frank", groups=(), now=NOW, save=save)


async def _csr_failing_save(s: Setup) -> None:
    def save(bundle: object) -> None:
        raise EscrowError("disk full")

    request = parse_csr(build_csr(generate_keys("gina")))
    await sign_request(s.escrow, s.ca, request, groups=(), now=NOW, save=save)


async def _revoke_unknown(s: Setup) -> None:
    await revoke_user(s.escrow, s.ca, "nobody", now=NOW)


async def _revoke_escrow(s: Setup) -> None:
    await revoke_user(s.escrow, s.ca, "acme", now=NOW)


@pytest.mark.parametrize(
    "action",
    [
        _duplicate,
        _escrow_name,
        _bad_name,
        _bad_group,
        _csr_name_mismatch,
        _failing_save,
        _csr_failing_save,
        _revoke_unknown,
        _revoke_escrow,
    ],
    ids=[
        "duplicate",
        "escrow-name",
        "bad-name",
        "bad-group",
        "csr-name-mismatch",
        "failing-save",
        "csr-failing-save",
        "revoke-unknown",
        "revoke-escrow",
    ],
)
async def test_refused_operations_store_nothing(setup: Setup, action: object) -> None:
    await register(setup, "bob")
    before = await setup.run(snapshot)
    with pytest.raises((EscrowError, BrokerError)):  # a bad name is broker's name rule
        await action(setup)  # type: ignore[operator]
    assert await setup.run(snapshot) == before


async def test_revocation_is_seen_at_the_moment_of_use(setup: Setup) -> None:
    bob = await register(setup, "bob")
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=NOW))
    revoked = await revoke_user(setup.escrow, setup.ca, "bob", now=later(1))
    assert len(revoked) == 2
    crl = await setup.run(lambda tx: current_crl(tx))
    assert {r.serial_number for r in crl} == {c.serial for c in revoked}
    # An answer obtained before revocation is refused once checked with the new CRL.
    stale_answer = DirectoryAnswer(
        "bob", answer.certificate, crl.public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(UntrustedCertificate) as info:
        _receiver_key(stale_answer, ca=bob.ca_certificate, now=later(1))
    assert info.value.reason == "revoked"
    with pytest.raises(DirectoryError):
        await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=later(1)))
    with pytest.raises(DirectoryError, match="already revoked"):
        await revoke_user(setup.escrow, setup.ca, "bob", now=later(1))
    # after revocation the name can be registered again, with new certificates
    again = await register(setup, "bob", now=later(2))
    answer2 = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=later(2)))
    assert _receiver_key(answer2, ca=again.ca_certificate, now=later(2)) is not None


@pytest.mark.parametrize(
    ("when", "message"),
    [(NOW.replace(year=2029), "no current"), (later(400), "no current")],
    ids=["before-issue", "after-expiry"],
)
async def test_lookup_gives_only_current_certificates(
    setup: Setup, when: object, message: str
) -> None:
    await register(setup, "bob")
    with pytest.raises(DirectoryError, match=message):
        await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=when))  # type: ignore[arg-type]


async def test_naive_time_is_a_bug_not_a_decision(setup: Setup) -> None:
    bob = await register(setup, "bob")
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=NOW))
    with pytest.raises(ValueError, match="timezone-aware"):
        _receiver_key(answer, ca=bob.ca_certificate, now=NOW.replace(tzinfo=None))


async def test_lookup_unknown_name(setup: Setup) -> None:
    with pytest.raises(DirectoryError, match="no user named"):
        await setup.run(lambda tx: lookup_encryption_certificate(tx, "nobody", now=NOW))


async def test_publish_crl_renews_and_numbers(setup: Setup) -> None:
    first = await setup.run(lambda tx: current_crl(tx))
    fresh = await publish_crl(setup.escrow, setup.ca, now=later(25))
    assert fresh.next_update_utc is not None
    assert fresh.next_update_utc > first.next_update_utc  # type: ignore[operator]
    stored = await setup.run(lambda tx: current_crl(tx))
    assert stored == fresh


async def test_client_refuses_a_stale_crl_from_the_directory(setup: Setup) -> None:
    bob = await register(setup, "bob")
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=later(40)))
    with pytest.raises(UntrustedCertificate) as info:
        _receiver_key(answer, ca=bob.ca_certificate, now=later(40))
    assert info.value.reason == "crl_stale"


async def test_directory_answer_for_another_name_is_refused(setup: Setup) -> None:
    bob = await register(setup, "bob")
    await register(setup, "mallory")
    real = await setup.run(lambda tx: lookup_encryption_certificate(tx, "mallory", now=NOW))
    swapped = DirectoryAnswer("bob", real.certificate, real.crl)
    with pytest.raises(UntrustedCertificate) as info:
        _receiver_key(swapped, ca=bob.ca_certificate, now=NOW)
    assert info.value.reason == "wrong_name"


async def test_directory_answer_from_another_escrow_is_refused(setup: Setup) -> None:
    bob = await register(setup, "bob")
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=NOW))
    with pytest.raises(UntrustedCertificate) as info:
        _receiver_key(answer, ca=make_ca("other").certificate, now=NOW)
    assert info.value.reason == "untrusted_issuer"
    assert bob.name == "bob"


# --- trust policy ------------------------------------------------------------------

STAFF = Member("alice", frozenset({"staff"}))
PARTNER = Member("bob", frozenset({"partners"}))
LONER = Member("zed")
RULES = frozenset({("staff", "partners"), ("*", "helpdesk")})
HELPDESK = Member("help", frozenset({"helpdesk"}))


@pytest.mark.parametrize(
    ("sender", "receiver", "policy", "allowed"),
    [
        (STAFF, PARTNER, TrustPolicy(), True),
        (PARTNER, STAFF, TrustPolicy(), True),
        (LONER, STAFF, TrustPolicy(), True),
        (STAFF, PARTNER, TrustPolicy(True, RULES), True),
        (PARTNER, STAFF, TrustPolicy(True, RULES), False),
        (LONER, PARTNER, TrustPolicy(True, RULES), False),
        (LONER, HELPDESK, TrustPolicy(True, RULES), True),
        (PARTNER, PARTNER, TrustPolicy(True, frozenset()), True),
        (STAFF, PARTNER, TrustPolicy(True, frozenset()), False),
    ],
    ids=[
        "open",
        "open-reverse",
        "open-no-groups",
        "rule",
        "no-reverse-rule",
        "no-groups",
        "wildcard",
        "self",
        "restricted-no-rules",
    ],
)
def test_may_send(sender: Member, receiver: Member, policy: TrustPolicy, allowed: bool) -> None:
    decision = may_send(sender, receiver, policy)
    assert decision.allowed is allowed
    assert bool(decision) is allowed
    if allowed:
        assert decision.reason is None
    else:
        assert decision.reason is not None
        assert sender.name in decision.reason


async def test_policy_is_stored_and_applied(setup: Setup) -> None:
    await register(setup, "alice", "staff")
    await register(setup, "bob", "partners")
    alice = await setup.run(lambda tx: trust.member(tx, "alice"))
    bob = await setup.run(lambda tx: trust.member(tx, "bob"))
    assert may_send(bob, alice, await setup.run(trust.load_policy))  # open by default

    async def restrict(tx: Tx) -> None:
        await trust.set_restricted(tx, True)
        assert await trust.add_rule(tx, "staff", "partners")
        assert not await trust.add_rule(tx, "staff", "partners")

    await setup.run(restrict)
    policy = await setup.run(trust.load_policy)
    assert may_send(alice, bob, policy)
    assert not may_send(bob, alice, policy)
    assert await setup.run(lambda tx: trust.remove_rule(tx, "staff", "partners"))
    assert not may_send(alice, bob, await setup.run(trust.load_policy))
    with pytest.raises(BrokerError, match="invalid group"):
        await setup.run(lambda tx: trust.add_rule(tx, "Not Valid", "x"))


async def test_open_escrow_refuses_a_non_escrow_directory(tmp_path: Path) -> None:
    with pytest.raises(EscrowError, match="not an escrow data directory"):
        async with open_escrow(tmp_path):
            pass


async def test_directory_certificate_seals_a_consignment_its_owner_opens(
    setup: Setup, tmp_path: Path
) -> None:
    """The sender knows only bob's name: the directory's certificate, checked
    against the CA, gives the key that bob's own identity then opens with."""
    import io

    from client import Recipient, Sender, Source, seal, unseal
    from client.errors import OpenError

    alice = await register(setup, "alice")
    bob = await register(setup, "bob")
    carol = await register(setup, "carol")
    answer = await setup.run(lambda tx: lookup_encryption_certificate(tx, "bob", now=NOW))
    bob_key = _receiver_key(answer, ca=alice.ca_certificate, now=NOW)
    alice_verify = verify_signing_certificate(
        alice.signing_certificate, ca=alice.ca_certificate, crl=answer.crl, now=NOW, name="alice"
    )
    sealed = io.BytesIO()
    deposit = seal(
        [Source("contract.txt", io.BytesIO(b"terms"), 5)],
        sealed,
        sender=Sender("alice", alice.signing_key),
        receivers=[Recipient("bob", bob_key)],
        escrow="acme",
    )
    out = io.BytesIO()
    unseal(
        io.BytesIO(sealed.getvalue()),
        out,
        identity=bob.encryption_key,
        release=deposit.release_for("bob"),
        sender_key=alice_verify,
    )
    assert out.getvalue() == b"terms"
    with pytest.raises(OpenError):
        unseal(
            io.BytesIO(sealed.getvalue()),
            io.BytesIO(),
            identity=carol.encryption_key,
            release=deposit.release_for("bob"),
            sender_key=alice_verify,
        )


@pytest.mark.parametrize("stored", ["issued-by-another-ca", "issued-to-another-name"])
async def test_no_current_key_when_the_stored_certificate_fails_the_checks(
    setup: Setup, stored: str
) -> None:
    """Release and deposit use `current_encryption_key`: a certificate in the
    directory that the checks refuse (e.g. written there by hand) gives no key,
    so no key part is ever sealed to it."""
    bob = await register(setup, "bob")
    later_on = NOW + timedelta(hours=1)
    ctx = Context(
        tx=None,  # type: ignore[arg-type]
        escrow_name="acme",
        ca=setup.ca.certificate,
        encryption_key=None,  # type: ignore[arg-type]
        vault=None,  # type: ignore[arg-type]
        request=None,  # type: ignore[arg-type]
        body=None,  # type: ignore[arg-type]
        now=later_on + timedelta(hours=1),
    )

    async def facts(tx: Tx) -> DirectoryFacts:
        return await current_encryption_key(dataclasses.replace(ctx, tx=tx), "bob")

    before = await setup.run(facts)
    assert before.current_key == raw_public_key(bob.encryption_key.public_key())
    issuer = make_ca("acme") if stored == "issued-by-another-ca" else setup.ca
    name = "bob" if stored == "issued-by-another-ca" else "carol"
    cert = issuer.issue(
        name, Role.ENCRYPTION, X25519PrivateKey.generate().public_key(), now=later_on, days=30
    )
    await setup.run(lambda tx: store_certificate(tx, "bob", Role.ENCRYPTION, cert))
    after = await setup.run(facts)
    assert after.registered
    assert after.current_key is None

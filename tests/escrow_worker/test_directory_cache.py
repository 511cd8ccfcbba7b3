"""The directory cache (`escrow_worker.ca.cache`) changes no decision: every
write to the directory gives it a new version, and a change made through
another store (another worker, another host, an operator's command) takes
effect at the very next request, on both backends."""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker import new_envelope, sign_envelope
from broker.errors import CertificateRejected, CertReason
from broker.pki.identity import Identity
from escrow_worker import Escrow, init_escrow, open_escrow, register_user, revoke_user
from escrow_worker.ca import cache
from escrow_worker.ca.authority import CertificateAuthority, load_ca
from escrow_worker.ca.directory import add_party, get_user
from escrow_worker.ca.policy import add_rule, load_policy, set_restricted
from escrow_worker.handlers.auth import VerifiedRequest, authenticate_request
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from escrow_worker.state.meta import get_meta
from tests.broker.pki_helpers import ESCROW_PASS, LOG_N, NOW

PACKAGE = Path(__file__).resolve().parents[2] / "escrow_worker"
TABLES = "|".join(cache.DIRECTORY_TABLES)
WRITE = re.compile(
    rf"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+({TABLES})\b", re.IGNORECASE
)


def test_every_write_to_the_directory_gives_it_a_new_version() -> None:
    """A write that bypassed `directory_changed` would leave every worker's
    cache stale: a revoked certificate would still pass. So each function
    holding SQL that writes a directory table must call it."""
    writers: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            sql = " ".join(
                n.value
                for n in ast.walk(node)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            )
            if not WRITE.search(sql):
                continue
            writers.append(f"{path.name}:{node.name}")
            calls = {
                n.func.id
                for n in ast.walk(node)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            }
            assert "directory_changed" in calls, f"{path}:{node.name} writes the directory"
    # The scan found the writers it must (it would pass vacuously otherwise).
    assert {"directory.py:add_party", "directory.py:mark_revoked", "policy.py:add_rule"} <= set(
        writers
    )


@dataclass
class Two:
    """Two stores on one escrow: a worker's (`worker`) and another one's."""

    worker: Escrow
    other: Escrow
    ca: CertificateAuthority
    alice: Identity


@pytest.fixture
async def two(escrow_location: Location) -> AsyncIterator[Two]:
    await init_escrow(escrow_location, "acme", ESCROW_PASS, now=NOW, log_n=LOG_N)
    async with open_escrow(escrow_location) as worker, open_escrow(escrow_location) as other:
        ca = await load_ca(other, ESCROW_PASS)
        alice = await register_user(other, ca, "alice", groups=(), now=NOW, save=lambda i: None)
        yield Two(worker, other, ca, alice)


def signed_request(identity: Identity) -> bytes:
    envelope = new_envelope(
        type="directory.lookup",
        body={"name": "alice"},
        audience="acme",
        signer=identity.signer,
        now=NOW,
        reply_to="alice",
    )
    return sign_envelope(envelope, identity.signing_key).to_wire()


async def authenticate(escrow: Escrow, data: bytes) -> VerifiedRequest:
    return await escrow.store.run(
        lambda tx: authenticate_request(
            tx, data, audience="acme", ca=escrow.ca_certificate, now=NOW
        )
    )


async def version(escrow: Escrow) -> str | None:
    return await escrow.store.run(lambda tx: get_meta(tx, "directory_version"))


async def test_a_revocation_elsewhere_takes_effect_at_the_next_request(two: Two) -> None:
    data = signed_request(two.alice)
    for _ in range(2):  # the second one is answered from the worker's cache
        assert (await authenticate(two.worker, data)).sender == "alice"
    await revoke_user(two.other, two.ca, "alice", now=NOW)
    with pytest.raises(CertificateRejected) as info:
        await authenticate(two.worker, data)
    assert info.value.reason is CertReason.REVOKED
    assert (await two.worker.store.run(lambda tx: get_user(tx, "alice"))).revoked_at is not None  # type: ignore[union-attr]


async def test_a_registration_elsewhere_is_known_at_the_next_request(two: Two) -> None:
    assert await two.worker.store.run(lambda tx: get_user(tx, "bob")) is None  # cached: unknown
    bob = await register_user(
        two.other, two.ca, "bob", groups=("staff",), now=NOW, save=lambda i: None
    )
    user = await two.worker.store.run(lambda tx: get_user(tx, "bob"))
    assert user is not None
    assert user.groups == ("staff",)
    assert (await authenticate(two.worker, signed_request(bob))).sender == "bob"


async def test_a_trust_rule_elsewhere_applies_at_the_next_request(two: Two) -> None:
    assert not (await two.worker.store.run(load_policy)).restricted

    async def restrict(tx: Tx) -> None:
        await set_restricted(tx, True)
        await add_rule(tx, "staff", "*")

    before = await version(two.worker)
    await two.other.store.run(restrict)
    assert await version(two.worker) != before
    policy = await two.worker.store.run(load_policy)
    assert policy.restricted
    assert policy.rules == frozenset({("staff", "*")})


async def test_a_transaction_reads_its_own_change_and_a_rolled_back_one_is_forgotten(
    two: Two,
) -> None:
    await two.worker.store.run(lambda tx: get_user(tx, "carol"))  # cached: unknown

    class Undo(Exception):
        pass

    async def register_then_fail(tx: Tx) -> None:
        assert await get_user(tx, "carol") is None
        await add_party(tx, "carol", kind="user", groups=(), now=NOW)
        assert await get_user(tx, "carol") is not None  # its own write, not the cache
        raise Undo

    before = await version(two.worker)
    with pytest.raises(Undo):
        await two.worker.store.run(register_then_fail)
    assert await version(two.worker) == before
    assert await two.worker.store.run(lambda tx: get_user(tx, "carol")) is None

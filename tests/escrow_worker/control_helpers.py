"""Helpers for the tests of receipts, co-signing, per-receiver attributes and
expiry at the escrow: a service driven directly (no transport) with its
injected clock, and signed receipts and agreements, good or bad."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import Deposit, Statement, StatementKind, sign_statement
from broker.messages import CosignBody, MessageType, ReceiptBody
from broker.pki.identity import Identity
from escrow_worker import EscrowService
from escrow_worker.replies import Outgoing
from escrow_worker.state.base import Tx
from tests.escrow_worker.helpers import (
    EscrowSetup,
    Received,
    deposit_body,
    request,
    table,
    verify,
)


@dataclass
class Answer:
    """The reply to one request and the events it caused, each verified."""

    reply: Received
    events: list[tuple[str, Received]]

    @property
    def code(self) -> str | None:
        return self.reply.code

    def kinds(self) -> list[tuple[str, str, str | None]]:
        """(inbox, event kind, receiver) of every event, in order."""
        return [
            (to, r.body.kind.value, r.body.receiver)
            for to, r in self.events
            if r.type == MessageType.EVENT
        ]


@dataclass
class Direct:
    """An escrow service answering requests handed to it directly."""

    setup: EscrowSetup
    service: EscrowService

    def outgoing(self, out: Outgoing) -> tuple[str, Received]:
        return out.destination, verify(self.setup, out.message.body)

    async def ask(self, name: str, type_: str, body: Any, **kw: Any) -> Answer:
        kw.setdefault("now", self.setup.clock.now)
        outcome = await self.service.handle(request(self.setup[name], type_, body, **kw))
        assert outcome.reply is not None, outcome
        _, reply = self.outgoing(outcome.reply)
        return Answer(reply, [self.outgoing(e) for e in outcome.events])

    async def deposit(self, deposit: Deposit) -> Answer:
        answer = await self.ask("alice", "deposit", deposit_body(self.setup, deposit))
        assert answer.reply.type == MessageType.DEPOSIT_RECEIPT, answer.reply.body
        return answer

    async def key(self, name: str, deposit: Deposit) -> Answer:
        body = {
            "consignment_id": deposit.consignment_id,
            "consignment_digest": deposit.consignment_digest,
        }
        return await self.ask(name, "key-request", body)

    async def expire(self) -> list[tuple[str, Received]]:
        return [self.outgoing(o) for o in await self.service.expire_due()]


def statement(party: Identity, deposit: Deposit, kind: StatementKind, **change: Any) -> Statement:
    values: dict[str, Any] = {
        "kind": kind,
        "consignment_id": deposit.consignment_id,
        "consignment_digest": deposit.consignment_digest,
        "policy_digest": deposit.policy_digest,
        "signer": party.name,
        "signed_at": 1_900_000_000,
    }
    values.update(change)
    return Statement(**values)


def signed_body(
    party: Identity,
    deposit: Deposit,
    kind: StatementKind = StatementKind.RECEIPT,
    *,
    key: Ed25519PrivateKey | None = None,
    **change: Any,
) -> ReceiptBody | CosignBody:
    """A receipt (or agreement) body for `deposit`, its statement changed by
    `change`, signed with `key` (default: the signer's)."""
    said = statement(party, deposit, kind, **change)
    model = ReceiptBody if kind is StatementKind.RECEIPT else CosignBody
    return model(
        consignment_id=deposit.consignment_id,
        statement=said,
        signature=sign_statement(said, key or party.signing_key),
    )


async def control_state(tx: Tx) -> dict[str, list[tuple[Any, ...]]]:
    """What receipts and co-signatures change, and what decides releases."""
    return {
        "attestations": await table(tx, "SELECT * FROM attestations ORDER BY 1, 2, 3"),
        "receivers": await table(
            tx,
            "SELECT consignment_id, receiver, notified_at, releases, revoked_at, closes_at,"
            " expired_at FROM deposit_receivers ORDER BY 1, 2",
        ),
        "releases": await table(tx, "SELECT * FROM releases ORDER BY 1"),
    }

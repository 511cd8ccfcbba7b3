"""The co-signer's agent: see what a consignment's agreement says, and sign it.

A co-signer is any registered party the sender named (not necessarily a
receiver); nobody gets the consignment's key until every co-signer has signed.
`CosignerAgent.agreement` asks the escrow for what it is asked to sign (the
whole policy, the consignment's digest and size, who has signed) and checks
that the policy hashes to the digest given; `cosign` signs that agreement and
sends it. This module must never sign an agreement whose policy digest it did
not recompute from the policy it shows.
"""

from __future__ import annotations

from broker.attest import StatementKind
from broker.messages import (
    AgreementBody,
    AgreementReplyBody,
    CosignReplyBody,
    MessageType,
)
from client.agent.core import Agent
from client.agent.inputs import require_consignment_id
from client.agent.types import Agreement, Cosigner, Signed
from client.errors import UntrustedMessage


class CosignerAgent(Agent):
    """Asks for and signs agreements as a co-signer. Constructed like `SenderAgent`."""

    async def agreement(self, consignment_id: str) -> Agreement:
        """What this party is asked to co-sign, as the escrow holds it."""
        require_consignment_id(consignment_id)
        _, body, _, _ = await self.request(
            MessageType.AGREEMENT,
            AgreementBody(consignment_id=consignment_id),
            subject=consignment_id,
        )
        assert isinstance(body, AgreementReplyBody)
        if body.policy.digest() != body.policy_digest:
            raise UntrustedMessage(
                "policy_mismatch",
                f"the escrow's agreement for {consignment_id} shows a policy that is not the one "
                "its digest says",
                "do not sign it; tell the escrow operator",
            )
        return Agreement(
            consignment_id=body.consignment_id,
            sender=body.sender,
            deposited_at=body.deposited_at,
            consignment_digest=body.consignment_digest,
            consignment_size=body.consignment_size,
            policy=body.policy,
            policy_digest=body.policy_digest,
            cosigners=tuple(Cosigner(c.name, c.signed_at) for c in body.cosigners),
        )

    async def cosign(self, agreement: Agreement) -> Signed:
        """Sign `agreement` (from `agreement()`, after showing it) and send it."""
        cid = agreement.consignment_id
        statement, body = await self._attest(
            StatementKind.AGREEMENT, cid, agreement.consignment_digest, agreement.policy_digest
        )
        if body is None:
            signed = (await self.agreement(cid)).cosigners
            return Signed(
                StatementKind.AGREEMENT, cid, self.name, statement.signed_at, None, signed
            )
        assert isinstance(body, CosignReplyBody)
        return Signed(
            StatementKind.AGREEMENT,
            cid,
            self.name,
            statement.signed_at,
            body.recorded_at,
            tuple(Cosigner(c.name, c.signed_at) for c in body.cosigners),
        )

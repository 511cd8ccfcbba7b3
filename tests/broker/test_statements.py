"""The signed statements' message bodies: a receipt carries a receipt, a
co-signature an agreement, and nothing else validates."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from broker.attest import Statement, StatementKind
from broker.control_messages import CosignBody, ReceiptBody


def _statement(kind: StatementKind) -> dict[str, object]:
    return Statement(
        kind=kind,
        consignment_id="ab" * 16,
        consignment_digest="cd" * 32,
        policy_digest=base64.b64encode(bytes(32)).decode(),
        signer="alice",
        signed_at=1_700_000_000,
    ).model_dump(mode="json")


def _body(statement: dict[str, object]) -> dict[str, object]:
    return {
        "consignment_id": "ab" * 16,
        "statement": statement,
        "signature": base64.b64encode(bytes(64)).decode(),
    }


@pytest.mark.parametrize(
    ("model", "kind"),
    [(ReceiptBody, StatementKind.RECEIPT), (CosignBody, StatementKind.AGREEMENT)],
)
def test_a_statement_of_its_own_kind_validates(
    model: type[ReceiptBody | CosignBody], kind: StatementKind
) -> None:
    body = model.model_validate(_body(_statement(kind)))
    assert body.statement.kind is kind


@pytest.mark.parametrize(
    ("model", "kind", "message"),
    [
        (ReceiptBody, StatementKind.AGREEMENT, "a receipt's statement is of kind 'receipt'"),
        (CosignBody, StatementKind.RECEIPT, "an agreement's statement is of kind 'agreement'"),
    ],
)
def test_a_statement_of_the_other_kind_is_refused(
    model: type[ReceiptBody | CosignBody], kind: StatementKind, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(_body(_statement(kind)))

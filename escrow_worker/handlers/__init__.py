"""The escrow's request handlers: authenticating a signed request (`auth`), the
pure decisions (`decide`), what every handler shares (`common`), and one module
per request type: `lookup`, `deposit`, `release` (key-request), `sender`
(revoke and status), `attest` (receipt, cosign, agreement), `batch` (many
deposits, key requests or revocations in one request). `HANDLERS` maps
(revoke and status), `attest` (receipt, cosign, agreement), `history` (a
party's log entries). `HANDLERS` maps
each (type, version) the escrow answers to its handler.
"""

from __future__ import annotations

from broker.messages import MessageType
from escrow_worker.handlers.attest import handle_agreement, handle_cosign, handle_receipt
from escrow_worker.handlers.batch import handle_batch
from escrow_worker.handlers.common import Handler
from escrow_worker.handlers.deposit import handle_deposit
from escrow_worker.handlers.history import handle_history
from escrow_worker.handlers.lookup import handle_lookup
from escrow_worker.handlers.release import handle_key_request
from escrow_worker.handlers.sender import handle_revoke, handle_status

__all__ = ["HANDLERS"]

#: The requests an escrow answers, by (type, version).
HANDLERS: dict[tuple[str, int], Handler] = {
    (MessageType.LOOKUP.value, 1): handle_lookup,
    (MessageType.DEPOSIT.value, 1): handle_deposit,
    (MessageType.KEY_REQUEST.value, 1): handle_key_request,
    (MessageType.REVOKE.value, 1): handle_revoke,
    (MessageType.STATUS.value, 1): handle_status,
    (MessageType.RECEIPT.value, 1): handle_receipt,
    (MessageType.COSIGN.value, 1): handle_cosign,
    (MessageType.AGREEMENT.value, 1): handle_agreement,
    (MessageType.BATCH.value, 1): handle_batch,
    (MessageType.HISTORY.value, 1): handle_history,
}

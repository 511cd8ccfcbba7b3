"""What a user can do about each typed refusal of the escrow: `refusal_error`
turns an `error` reply into `EscrowRefused` with the escrow's code and a hint,
`undecided_error` one that decided nothing (the request is kept).
Plain data and one function: it must never do I/O."""

from __future__ import annotations

from typing import Final

from broker.messages import ErrorBody, ErrorCode, MessageType
from client.errors import EscrowRefused

#: What a user can do about each refusal of the escrow.
HINTS: Final[dict[str, str]] = {
    ErrorCode.REVOKED: "the sender revoked this consignment for you; ask the sender",
    ErrorCode.NOT_YET: "the sender's conditions do not allow it yet; ask again later",
    ErrorCode.EXPIRED: "the time to ask for this consignment is over; ask the sender to resend",
    ErrorCode.EXHAUSTED: "the consignment was released as often as the sender allowed",
    ErrorCode.NOT_A_RECEIVER: "this consignment is not addressed to you",
    ErrorCode.NOT_SENDER: "only the consignment's sender may do this",
    ErrorCode.NOT_ALLOWED: "the escrow's trust policy does not allow it; ask the operator",
    ErrorCode.UNKNOWN_CONSIGNMENT: "check the consignment id; was it deposited at this escrow?",
    ErrorCode.ALREADY_DEPOSITED: "this consignment is already deposited",
    ErrorCode.DIGEST_MISMATCH: "your copy differs from the one deposited; get it again",
    ErrorCode.UNKNOWN_USER: "check the name with the escrow operator (consign escrow users)",
    ErrorCode.UNAUTHENTICATED: "check your identity and certificates (consign id show)",
    ErrorCode.REPLAYED: "the escrow saw this request before with other bytes; ask again",
    ErrorCode.MALFORMED: "the escrow could not read the request; upgrade consign",
    ErrorCode.UNKNOWN_TYPE: "the escrow does not speak this request; upgrade it or consign",
    ErrorCode.INTERNAL: "the escrow failed; try again later or tell its operator",
    ErrorCode.STALE: "check this machine's clock; the request was too old or from the future",
    ErrorCode.WRONG_ESCROW: "the consignment names another escrow",
    ErrorCode.WRONG_KEY: "a receiver's key changed since you looked it up; seal again",
    ErrorCode.ASK_WINDOW_CLOSED: "the time to ask for the key part is over; ask the sender",
    ErrorCode.UNSUPPORTED: "this escrow does not enforce that condition; seal without it",
    ErrorCode.RECEIPT_REQUIRED: (
        "the sender asks for your signed receipt first: `consign open` sends it for you"
    ),
    ErrorCode.COSIGNATURES_PENDING: (
        "every co-signer must sign first (`consign cosign ID`); ask again later"
    ),
    ErrorCode.TRUST_WITHDRAWN: (
        "the escrow's operator no longer lets the sender send to you; ask the operator"
    ),
    ErrorCode.INVALID_SIGNATURE: "sign with your own current identity (consign id show)",
    ErrorCode.SUBJECT_MISMATCH: (
        "sign the consignment as the escrow holds it: get a fresh copy from the sender"
    ),
    ErrorCode.NOT_A_COSIGNER: "the sender did not name you as a co-signer of this consignment",
    ErrorCode.ALREADY_SIGNED: "the escrow has your signature for this consignment already",
}


#: Where a code means something else for one request type: (code, type) -> hint.
REQUEST_HINTS: Final[dict[tuple[str, str], str]] = {
    (ErrorCode.NOT_A_RECEIVER, MessageType.REVOKE): (
        "name only receivers the consignment was sealed for (`consign status ID` lists them), "
        "or leave out --receiver to revoke it for all of them"
    ),
}


def refusal_error(body: ErrorBody) -> EscrowRefused:
    code = body.code.value
    hint = REQUEST_HINTS.get((code, body.request_type)) or HINTS.get(code)
    return EscrowRefused(
        code,
        f"the escrow refused the {body.request_type or 'request'}: {body.message} ({code})",
        hint,
        request_type=body.request_type,
        consignment_id=body.consignment_id,
        reason=body.message,
    )


def undecided_error(body: ErrorBody) -> EscrowRefused:
    """A reply that decided nothing, as the agent raises it when no decision
    came: the request is kept, and asking again sends it again (after
    `replayed`, whose id another signer holds, asking again makes a new one)."""
    refused = refusal_error(body)
    again = (
        "asking again makes a new request"
        if body.code == ErrorCode.REPLAYED
        else "asking again sends the same request again"
    )
    hint = f"{refused.hint}; the escrow decided nothing, {again}"
    return EscrowRefused(
        refused.code,
        refused.message,
        hint,
        request_type=refused.request_type,
        consignment_id=refused.consignment_id,
        reason=refused.reason,
    )

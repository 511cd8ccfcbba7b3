"""`lookup`: a registered party's current certificates and the current CRL."""

from __future__ import annotations

from broker.messages import (
    ErrorCode,
    LookupBody,
    LookupReplyBody,
    MessageType,
)
from broker.pki.profile import Role, to_pem
from escrow_worker.ca.directory import current_crl_der, get_user, select_current
from escrow_worker.handlers.common import (
    Context,
    Result,
    refuse,
)
from escrow_worker.handlers.decide import (
    Denial,
)


async def handle_lookup(ctx: Context) -> Result:
    assert isinstance(ctx.body, LookupBody)
    name = ctx.body.name
    user = await get_user(ctx.tx, name)
    signing = encryption = None
    if user is not None and user.revoked_at is None:
        signing = select_current(user.certificates, Role.SIGNING, ctx.now)
        encryption = select_current(user.certificates, Role.ENCRYPTION, ctx.now)
    if signing is None or encryption is None:
        return refuse(
            ctx,
            Denial(ErrorCode.UNKNOWN_USER, f"{name!r} has no current certificates here"),
        )
    body = LookupReplyBody(
        in_reply_to=ctx.request_id,
        name=name,
        signing_certificate=to_pem(signing.certificate),
        encryption_certificate=to_pem(encryption.certificate),
        crl=await current_crl_der(ctx.tx),
    )
    return Result(MessageType.LOOKUP_REPLY, body)

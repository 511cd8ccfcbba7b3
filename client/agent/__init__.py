"""The agents: an application's side of the escrow protocol (docs/protocol.md).

    async with SenderAgent(identity, transport, "acme", state_dir) as alice:
        sealed = await alice.seal(["report.pdf"], "report.consignment", to=["bob"])
        await alice.send(sealed.path)                      # chunks to bob's inbox
        print(await alice.status(sealed.consignment_id))

    async with ReceiverAgent(identity, transport, "acme", state_dir) as bob:
        inbox = await bob.fetch()                          # stored before acked
        opened = await bob.open(inbox.received[0].consignment_id, Path("out"))

    async with CosignerAgent(identity, transport, "acme", state_dir) as carol:
        agreement = await carol.agreement(consignment_id)  # show it, then:
        await carol.cosign(agreement)

Both read their inbox in the background, keep what arrives in `state_dir`
(SQLite), verify every message (the escrow's signature and certificate for
escrow messages, the sender's for chunks) and store every request before they
publish it, so asking again re-sends the same bytes. Errors are `ClientError`s:
`EscrowRefused` (the escrow's typed refusal), `NoReply`, `UntrustedMessage`,
`OpenError`. Sealing and opening run in worker threads: the event loop is never
blocked.

This package exports the agents and the records they return; its modules are
internal: `core` (the `Agent` base: life cycle, signed requests, waiting for
replies), `sender`, `receiver` and `cosigner`, `attest` (signing receipts and
agreements, verifying those forwarded), `inbox` (the pump; verifying and filing what
arrives), `verify` (checks of wire messages), `directory` (the certificates
looked up, cached and checked), `store/` (the database: all the agents' SQL),
`chunks` (a file as signed chunks and back), `hints` (what to do about each
refusal), `inputs` (checks of what a caller gives), `types` (the records),
`batch` (batch requests and the check of each result), `bulk` (the sender's
batch operations), `joblist` (the lists and manifests they work from) and
`unattended` (opening many, and `serve`).
"""

from __future__ import annotations

from client.agent.bulk import ItemResult, SealJob
from client.agent.cosigner import CosignerAgent
from client.agent.receiver import ReceiverAgent
from client.agent.sender import SenderAgent
from client.agent.types import (
    Agreement,
    Attested,
    ConsignmentStatus,
    Cosigner,
    Event,
    InboxContents,
    Notification,
    OpenedConsignment,
    Party,
    Receipt,
    Received,
    ReceiverState,
    Refusal,
    Revoked,
    Sealed,
    Sent,
    Signed,
)
from client.agent.unattended import ServeOptions

__all__ = [
    "Agreement",
    "Attested",
    "ConsignmentStatus",
    "Cosigner",
    "CosignerAgent",
    "Event",
    "InboxContents",
    "ItemResult",
    "Notification",
    "OpenedConsignment",
    "Party",
    "Receipt",
    "Received",
    "ReceiverAgent",
    "ReceiverState",
    "Refusal",
    "Revoked",
    "SealJob",
    "Sealed",
    "SenderAgent",
    "Sent",
    "ServeOptions",
    "Signed",
]

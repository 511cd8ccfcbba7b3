"""Batch opening and the unattended receiver: `open_many` opens every
consignment waiting in the inbox with `batch` key requests; `serve` does it as
they arrive and hands each one, opened, to the application's handler.

Each key request item is stored (id and body) before its batch is sent, so a
receiver killed anywhere asks again with the same item and the escrow answers
from its record: a key part is released once per consignment however often the
receiver restarts. A consignment counts as handled only once its handler has
returned (`handled` table); one whose handler raised or overran its time limit
is handed over again later, and after `max_tries` it is parked with its reason
(`consign inbox` and `ReceiverAgent.parked` list them). This module must never
write an opened file before every check has passed (`open_released` does it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.deposit import Mode
from broker.errors import TransportError
from broker.messages import BatchKind, ErrorBody, KeyReleaseBody, KeyRequestBody, MessageType
from client.agent import bulk
from client.agent.bulk import BatchProgress, ItemResult
from client.agent.hints import refusal_error
from client.agent.store import BatchItemRow, Handled, NewItem
from client.agent.types import OpenedConsignment, Party
from client.consignment import ConsignmentInfo, consignment_digest, inspect
from client.errors import ClientError, EscrowRefused, NoReply, OpenError
from client.format.manifest import FileEntry

if TYPE_CHECKING:
    from client.agent.receiver import ReceiverAgent

__all__ = ["Handler", "ServeOptions", "open_many", "serve"]

_log = logging.getLogger(__name__)

#: The application's callback: one opened consignment; returning hands it over.
Handler = Callable[[OpenedConsignment], Awaitable[None]]
_JOB = "open"
#: Refusals that time or others may lift: `serve` asks again later instead of
#: parking the consignment.
_LATER = frozenset({"not_yet", "cosignatures_pending", "internal"})


@dataclass(frozen=True)
class ServeOptions:
    #: Seconds a handler may take per consignment before it counts as failed.
    handler_timeout: float = 300.0
    #: Tries per consignment before it is parked.
    max_tries: int = 5
    #: Seconds between looks at the inbox when nothing arrives.
    poll: float = 1.0


def _opened_json(opened: OpenedConsignment) -> str:
    return json.dumps(
        {
            "consignment_id": opened.consignment_id,
            "sender": opened.sender,
            "mode": opened.mode.value,
            "destination": str(opened.destination),
            "files": [[f.name, f.size, f.mode] for f in opened.files],
            "released_at": opened.released_at,
            "receipt_signed_at": opened.receipt_signed_at,
        }
    )


def _opened_of(text: str) -> OpenedConsignment:
    data: dict[str, Any] = json.loads(text)
    return OpenedConsignment(
        consignment_id=data["consignment_id"],
        sender=data["sender"],
        mode=Mode(data["mode"]),
        destination=Path(data["destination"]),
        files=tuple(FileEntry(n, s, m) for n, s, m in data["files"]),
        released_at=data["released_at"],
        receipt_signed_at=data["receipt_signed_at"],
    )


async def open_many(
    agent: ReceiverAgent,
    into: Path,
    *,
    consignments: Sequence[tuple[str, Path]] | None = None,
    progress: BatchProgress | None = None,
    handled: bool = True,
) -> tuple[list[ItemResult], list[OpenedConsignment]]:
    """Open `consignments` ((id, file) pairs; default: every one that arrived
    whole and was not opened yet) each into `into/<id>`, asking for the key
    parts in `batch` requests. With `handled`, each is recorded as handled
    once opened (`serve` records it only once its handler returned)."""
    targets = (
        list(consignments)
        if consignments is not None
        else [(c, p) for c, p in await agent.store.complete_unhandled() if p is not None]
    )
    results: dict[str, ItemResult] = {}
    new: list[NewItem] = []
    paths: dict[str, Path] = {}
    infos: dict[str, ConsignmentInfo] = {}  # each header read once in this pass
    stored = await agent.store.batch_items_of(_JOB, [cid for cid, _ in targets])
    for position, (cid, path) in enumerate(targets):
        paths[cid] = path
        if cid in stored:
            continue
        info = infos[cid] = await asyncio.to_thread(inspect, path)
        if info.escrow != agent.escrow or info.consignment_id != cid:
            results[cid] = ItemResult(
                cid, False, cid, code="open_error", message=OpenError().message
            )
            continue
        digest = await asyncio.to_thread(consignment_digest, path)
        body = KeyRequestBody(consignment_id=cid, consignment_digest=digest)
        new.append(
            NewItem(cid, position, cid, path, uuid.uuid4().hex, json.dumps(body.model_dump()))
        )
    if new:
        await agent.store.add_batch_items(_JOB, new)
        stored = await agent.store.batch_items_of(_JOB, list(paths))
    rows = [stored[cid] for cid in paths if cid in stored]
    await bulk._send_items(agent, _JOB, BatchKind.KEY_REQUEST, rows, "key", progress)
    stored = await agent.store.batch_items_of(_JOB, list(paths))  # with their results
    opened: list[OpenedConsignment] = []
    # Noted opened and recorded together once all are opened, in one
    # transaction: a pass cut short opens the same files again next time (the
    # key parts are recorded already), a consignment is never noted opened
    # without the record that hands it over, and no handler runs before that.
    records: list[Handled] = []
    arrived: dict[str, Path] = {}  # the files that the record makes removable
    senders: dict[str, Party] = {}  # looked up once in this pass
    for done, (cid, path) in enumerate(targets, 1):
        if cid in results:
            continue
        row = stored.get(cid)
        try:
            one = await _open_one(agent, row, path, into / cid, senders, infos.get(cid))
        except ClientError as exc:
            results[cid] = bulk._failed(cid, exc, cid)
            if isinstance(exc, EscrowRefused) and row is not None:
                # Refused: nothing was released. Like `open`, the next try is a
                # new request (the refusal is recorded under this item's id).
                await agent.store.forget_batch_item(row.item_id)
            continue
        finally:
            if progress is not None:
                progress("open", done, len(targets))
        state = "handled" if handled else "opened"
        records.append(Handled(cid, state, one.destination, agent._ts(), opened=_opened_json(one)))
        arrived[cid] = path
        opened.append(one)
        results[cid] = ItemResult(cid, True, cid, one.destination)
    if records:
        kept = await agent.store.opened_and_handled(records, agent._ts())
        removable = set(arrived.values())
        for file in kept:
            if file in removable:
                await asyncio.to_thread(file.unlink, missing_ok=True)
    return [results[cid] for cid, _ in targets], opened


async def _open_one(
    agent: ReceiverAgent,
    row: BatchItemRow | None,
    path: Path,
    destination: Path,
    senders: dict[str, Party],
    info: ConsignmentInfo | None,
) -> OpenedConsignment:
    assert row is not None
    assert row.reply_type is not None
    assert row.reply_body is not None
    body = json.loads(row.reply_body)
    if row.reply_type == MessageType.ERROR:
        refused = refusal_error(ErrorBody.model_validate(body))
        if refused.code == "receipt_required":
            # The sender asks for a receipt first: the single path signs it.
            return await agent.open(path, destination, overwrite=True)
        explained = await agent._explain(refused, row.consignment_id)
        raise explained
    release = KeyReleaseBody.model_validate(body)
    if info is None:
        info = await asyncio.to_thread(inspect, path)
    digest = json.loads(row.item_body)["consignment_digest"]
    # Opened before and killed before it was recorded: the same files again.
    # keep: the file is removed once the pass has recorded it (`open_many`).
    return await agent.open_released(
        path, info, digest, release, destination, overwrite=True, senders=senders, keep=True
    )


async def serve(
    agent: ReceiverAgent,
    handler: Handler,
    into: Path,
    *,
    stop: asyncio.Event,
    options: ServeOptions = ServeOptions(),
) -> None:
    """See `ReceiverAgent.serve`."""
    waits: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            await _serve_once(agent, handler, into, options, waits, loop.time())
        except (TransportError, NoReply, EscrowRefused) as exc:
            _log.warning("receiver %s: %s; trying again", agent.name, exc.message)
        try:
            async with asyncio.timeout(options.poll):
                await stop.wait()
        except TimeoutError:
            pass


async def _serve_once(
    agent: ReceiverAgent,
    handler: Handler,
    into: Path,
    options: ServeOptions,
    waits: dict[str, float],
    now: float,
) -> None:
    waiting = await agent.store.complete_unhandled()
    known = await agent.store.handling_of([cid for cid, _ in waiting])
    fresh = [(cid, p) for cid, p in waiting if p is not None and cid not in known]
    fresh = [(cid, p) for cid, p in fresh if waits.get(cid, 0.0) <= now]
    if fresh:
        results, _ = await open_many(agent, into, consignments=fresh, handled=False)
        for result in results:
            if result.ok:
                _log.info("opened %s into %s", result.consignment_id, result.path)
                continue
            reason = f"{result.code}: {result.message}"
            if result.code in _LATER:
                waits[result.key] = now + 60.0
                _log.info("cannot open %s yet: %s (asking again in 60 s)", result.key, reason)
                continue
            _log.warning("cannot open %s: %s (parked)", result.key, reason)
            await agent.store.set_handled(
                result.key, "parked", destination=None, now=agent._ts(), reason=reason
            )
    known = await agent.store.handling_of([cid for cid, _ in waiting])  # as opened just now
    for cid, _ in waiting:
        row = known.get(cid)
        if row is None or row["state"] != "opened" or waits.get(cid, 0.0) > now:
            continue
        opened = _opened_of(row["opened"])
        tries = int(row["tries"]) + 1
        try:
            async with asyncio.timeout(options.handler_timeout):
                await handler(opened)
        except Exception as exc:  # the application's failure, whatever it is
            reason = (
                f"the handler took longer than {options.handler_timeout:g} s"
                if isinstance(exc, TimeoutError)
                else f"the handler failed: {type(exc).__name__}: {exc}"
            )
            state = "parked" if tries >= options.max_tries else "opened"
            await agent.store.set_handled(
                cid, state, destination=opened.destination, now=agent._ts(), tries=tries,
                reason=reason[:1024],
            )  # fmt: skip
            waits[cid] = now + min(2.0**tries, 60.0)
            _log.warning(
                "%s: %s (try %d of %d%s)", cid, reason, tries, options.max_tries,
                ", parked" if state == "parked" else "",
            )  # fmt: skip
            continue
        await agent.store.set_handled(
            cid, "handled", destination=opened.destination, now=agent._ts(), tries=tries
        )
        _log.info("handled %s from %s (%d files)", cid, opened.sender, len(opened.files))

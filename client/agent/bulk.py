"""Batch operations of the sender: seal and deposit many consignments, send
them, revoke many, with progress and a result per item.

`seal_many` checks every input file first (a missing one refuses the whole
run before anything is sealed), looks up each receiver once, seals each
consignment and stores its deposit item (id and body: the deposit is sealed to
the escrow) before any batch is sent, then deposits in `batch` requests. A run
with the same jobs after a crash picks up where the last one stopped: what was
stored is not sealed again, items are sent again with the same id and body, and
the escrow answers them from its record, so nothing is deposited twice. A file
whose deposit the escrow refused is removed (nobody could open it). This
module must never send a consignment whose deposit was refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker import seal_deposit
from broker.canonical import b64, canonical_json
from broker.deposit import ControlAttributes, Mode
from broker.messages import (
    BatchKind,
    DepositBody,
    DepositReceiptBody,
    ErrorBody,
    MessageType,
    RevokeBody,
    RevokeReplyBody,
)
from client.agent import batch
from client.agent.batch import Item
from client.agent.inputs import require_consignment_id, require_name
from client.agent.store import BatchItemRow, NewItem
from client.agent.types import Party, Receipt, Sealed
from client.consignment import Recipient, Sender, seal_async
from client.errors import AgentError, ClientError, EscrowRefused, UntrustedCertificate

if TYPE_CHECKING:
    from client.agent.sender import SenderAgent

__all__ = ["BatchProgress", "ItemResult", "SealJob", "revoke_many", "seal_many", "send_many"]

#: (stage, done, total): stage is "seal", "deposit", "send" or "revoke".
BatchProgress = Callable[[str, int, int], None]
#: Sealed items stored at once (a crash re-seals at most these).
_FLUSH = 32
#: Consignments being sent at once by `send_many`.
_SENDING = 32


@dataclass(frozen=True)
class SealJob:
    """One consignment to seal: its files, its receivers, the file to write."""

    inputs: tuple[Path, ...]
    to: tuple[str, ...]
    output: Path


@dataclass(frozen=True)
class ItemResult:
    """What became of one item: `key` names it (the output file, or the
    consignment id); `code` and `message` say why it failed."""

    key: str
    ok: bool
    consignment_id: str | None = None
    path: Path | None = None
    code: str | None = None
    message: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ok": self.ok,
            "consignment_id": self.consignment_id,
            "path": None if self.path is None else str(self.path),
            "code": self.code,
            "message": self.message,
        }


def _failed(key: str, exc: ClientError, cid: str | None = None) -> ItemResult:
    code = getattr(exc, "code", None) or type(exc).__name__
    return ItemResult(key, False, cid, code=str(code), message=exc.message)


def _absolute(jobs: Sequence[SealJob]) -> list[SealJob]:
    return [
        SealJob(tuple(Path(p).absolute() for p in j.inputs), tuple(j.to), j.output.absolute())
        for j in jobs
    ]


async def _check_inputs(jobs: Sequence[SealJob]) -> None:
    outputs: set[Path] = set()
    for job in jobs:
        for path in job.inputs:
            if not await asyncio.to_thread(path.is_file):
                raise AgentError(
                    f"no input file {path} (for {job.output}): nothing was sealed",
                    "fix the list or the manifest, then run it again",
                )
        if job.output in outputs:
            raise AgentError(
                f"two consignments would be written to {job.output}: nothing was sealed",
                "give each consignment a file of its own",
            )
        outputs.add(job.output)


def job_id(jobs: Sequence[SealJob], mode: Mode, attributes: ControlAttributes | None) -> str:
    """The same jobs, mode and conditions: the same run, resumed."""
    described = {
        "mode": mode.value,
        "attributes": None if attributes is None else attributes.model_dump(mode="json"),
        "jobs": [[[str(p) for p in j.inputs], list(j.to), str(j.output)] for j in jobs],
    }
    return "seal:" + hashlib.sha256(canonical_json(described)).hexdigest()


async def seal_many(
    agent: SenderAgent,
    jobs: Sequence[SealJob],
    *,
    mode: Mode = Mode.SPLIT,
    attributes: ControlAttributes | None = None,
    progress: BatchProgress | None = None,
) -> list[ItemResult]:
    """See `SenderAgent.seal_many`."""
    jobs = await asyncio.to_thread(_absolute, jobs)
    await _check_inputs(jobs)
    run = job_id(jobs, mode, attributes)
    stored = {row.key: row for row in await agent.store.batch_items(run)}
    failed: dict[str, ItemResult] = {}
    todo = [(i, j) for i, j in enumerate(jobs) if str(j.output) not in stored]
    parties: dict[str, Party] = {}
    refused: dict[str, ClientError] = {}
    for name in sorted({n for _, j in todo for n in j.to}):
        # A receiver that is no name, or that the escrow does not know, fails
        # its items; no answer at all (NoReply) stops the run, to be resumed.
        try:
            require_name(name)
        except AgentError as exc:
            refused[name] = exc
            continue
        try:
            parties[name] = await agent.lookup(name)
        except (EscrowRefused, UntrustedCertificate) as exc:
            refused[name] = exc
    escrow = await agent.escrow_party() if todo else None
    new: list[NewItem] = []
    for done, (position, job) in enumerate(todo, 1):
        key = str(job.output)
        bad = next((refused[n] for n in job.to if n in refused), None)
        if bad is not None or not job.to:
            failed[key] = (
                _failed(key, bad)
                if bad is not None
                else ItemResult(key, False, code="no_receiver", message="no receiver given")
            )
            continue
        assert escrow is not None
        try:
            await asyncio.to_thread(job.output.parent.mkdir, parents=True, exist_ok=True)
            deposit = await seal_async(
                list(job.inputs),
                job.output,
                sender=Sender(agent.name, agent.identity.signing_key),
                receivers=[Recipient(n, parties[n].encryption_key) for n in dict.fromkeys(job.to)],
                escrow=agent.escrow,
                mode=mode,
                attributes=attributes,
            )
        except ClientError as exc:
            failed[key] = _failed(key, exc)
            continue
        except OSError as exc:
            failed[key] = ItemResult(key, False, code="os_error", message=str(exc))
            continue
        body = DepositBody(
            consignment_id=deposit.consignment_id,
            sealed_deposit=seal_deposit(deposit, escrow.encryption_key),
        )
        expect = {
            "consignment_digest": deposit.consignment_digest,
            "plaintext_commitment": deposit.plaintext_commitment,
            "policy_digest": b64(deposit.policy_digest),
            "receivers": sorted(r.name for r in deposit.policy.receivers),
            "consignment_size": deposit.consignment_size,
            "sealed_at": deposit.sealed_at,
            "mode": mode.value,
        }
        new.append(
            NewItem(
                key, position, deposit.consignment_id, job.output, uuid.uuid4().hex,
                json.dumps(body.model_dump(mode="json")), json.dumps(expect),
            )
        )  # fmt: skip
        if len(new) >= _FLUSH:
            await agent.store.add_batch_items(run, new)
            new = []
        if progress is not None:
            progress("seal", done, len(todo))
    if new:
        await agent.store.add_batch_items(run, new)
    rows = await agent.store.batch_items(run)
    await _send_items(agent, run, BatchKind.DEPOSIT, rows, "deposit", progress)
    outcomes = [await _deposited(agent, row) for row in await agent.store.batch_items(run)]
    # Kept in one transaction (a run resumed after a crash keeps them again).
    await agent.store.record_sealed_many([kept for _, kept in outcomes if kept is not None])
    results = {result.key: result for result, _ in outcomes}
    results.update(failed)
    return [results[str(j.output)] for j in jobs]


async def _send_items(
    agent: SenderAgent | Any,
    run: str,
    kind: BatchKind,
    rows: Sequence[BatchItemRow],
    stage: str,
    progress: BatchProgress | None,
) -> None:
    """Send every stored item that has no result yet, in batches."""
    pending = [r for r in rows if r.reply_type is None]
    items = [Item(r.item_id, json.loads(r.item_body), _subject(kind, r)) for r in pending]
    done = len(rows) - len(pending)
    for chunk in batch.batches(items):
        answers = await batch.ask(agent, kind, chunk)
        await agent.store.batch_results(
            [(i, t.value, batch.dumps(body)) for i, (t, body) in answers.items()], agent._ts()
        )
        done += len(chunk)
        if progress is not None:
            progress(stage, done, len(rows))


def _subject(kind: BatchKind, row: BatchItemRow) -> str:
    if kind is BatchKind.KEY_REQUEST:
        body = json.loads(row.item_body)
        return f"{row.consignment_id}:{body['consignment_digest']}"
    return row.consignment_id


async def _deposited(
    agent: SenderAgent, row: BatchItemRow
) -> tuple[ItemResult, tuple[Sealed, int] | None]:
    """The item's result: the receipt checked against the deposit and the
    consignment to keep as sealed (and when it was), or the refusal (and the
    file removed)."""
    path = None if row.path is None else Path(row.path)
    assert row.reply_type is not None
    assert row.reply_body is not None
    assert row.expect is not None
    body = json.loads(row.reply_body)
    if row.reply_type == MessageType.ERROR:
        error = ErrorBody.model_validate(body)
        if path is not None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        # Nothing was deposited: the next run seals and deposits it anew.
        await agent.store.forget_batch_item(row.item_id)
        failure = ItemResult(
            row.key, False, row.consignment_id, None, error.code.value, error.message
        )
        return failure, None
    receipt = DepositReceiptBody.model_validate(body)
    expect = json.loads(row.expect)
    got = {
        "consignment_digest": receipt.consignment_digest,
        "plaintext_commitment": receipt.plaintext_commitment,
        "policy_digest": b64(receipt.policy_digest),
        "receivers": sorted(receipt.receivers),
    }
    if receipt.sender != agent.name or any(expect[k] != v for k, v in got.items()):
        message = f"the escrow's receipt for {row.consignment_id} does not match the deposit"
        mismatch = ItemResult(row.key, False, row.consignment_id, path, "receipt_mismatch", message)
        return mismatch, None
    assert path is not None
    sealed = Sealed(
        consignment_id=row.consignment_id,
        path=path,
        mode=Mode(expect["mode"]),
        receivers=tuple(expect["receivers"]),
        consignment_digest=receipt.consignment_digest,
        consignment_size=int(expect["consignment_size"]),
        # The item's result; the signed batch reply that holds it is kept with
        # the batch request.
        receipt=Receipt.of(receipt, row.item_id, row.reply_body.encode()),
    )
    return ItemResult(row.key, True, row.consignment_id, path), (sealed, int(expect["sealed_at"]))


async def send_many(
    agent: SenderAgent,
    results: Sequence[ItemResult],
    *,
    progress: BatchProgress | None = None,
    patience: float = 10.0,
) -> list[ItemResult]:
    """Send each consignment `seal_many` deposited (the others pass through).
    The escrow declares a receiver's inbox when it notifies it, just after its
    batch reply: a receiver whose inbox is not there yet is tried again for up
    to `patience` seconds before the item fails (`not_sent`)."""
    slots = asyncio.Semaphore(_SENDING)
    done = 0

    async def one(result: ItemResult) -> ItemResult:
        nonlocal done
        async with slots:
            if result.ok and result.consignment_id is not None:
                result = await _send_one(agent, result, patience)
            done += 1
            if progress is not None:
                progress("send", done, len(results))
            return result

    return list(await asyncio.gather(*(one(r) for r in results)))


async def _send_one(agent: SenderAgent, result: ItemResult, patience: float) -> ItemResult:
    assert result.consignment_id is not None
    waited = 0.0
    while True:
        try:
            await agent.send(result.consignment_id)
            return result
        except AgentError as exc:
            if "has no inbox" not in exc.message or waited >= patience:
                return ItemResult(
                    result.key, False, result.consignment_id, result.path, "not_sent", exc.message
                )
            await asyncio.sleep(0.25)
            waited += 0.25


async def revoke_many(
    agent: SenderAgent,
    consignment_ids: Sequence[str],
    receivers: Sequence[str] = (),
    *,
    progress: BatchProgress | None = None,
) -> list[ItemResult]:
    """See `SenderAgent.revoke_many`."""
    ids = list(dict.fromkeys(map(require_consignment_id, consignment_ids)))
    names = tuple(sorted(set(map(require_name, receivers))))
    run = "revoke:" + hashlib.sha256(canonical_json([ids, list(names)])).hexdigest()
    have = {row.key for row in await agent.store.batch_items(run)}
    new = [
        NewItem(
            cid, position, cid, None, uuid.uuid4().hex,
            json.dumps(RevokeBody(consignment_id=cid, receivers=names).model_dump(mode="json")),
        )
        for position, cid in enumerate(ids)
        if cid not in have
    ]  # fmt: skip
    if new:
        await agent.store.add_batch_items(run, new)
    rows = await agent.store.batch_items(run)
    await _send_items(agent, run, BatchKind.REVOKE, rows, "revoke", progress)
    results: list[ItemResult] = []
    for row in await agent.store.batch_items(run):
        assert row.reply_body is not None
        body = json.loads(row.reply_body)
        if row.reply_type == MessageType.ERROR:
            error = ErrorBody.model_validate(body)
            results.append(
                ItemResult(
                    row.key, False, row.consignment_id, None, error.code.value, error.message
                )
            )
        else:
            reply = RevokeReplyBody.model_validate(body)
            message = "revoked for " + ", ".join(reply.revoked)
            results.append(ItemResult(row.key, True, row.consignment_id, message=message))
    return results

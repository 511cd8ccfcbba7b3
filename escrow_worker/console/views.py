"""What each console page shows, read from the store in one job, as pydantic
models: the HTML page renders the model and the JSON API returns it, so the two
never disagree. This module must never read a key part, a passphrase hash or a
session token, and never write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from broker.pki.profile import Role
from escrow_worker.ca import directory
from escrow_worker.ca.policy import load_policy
from escrow_worker.console.queues import BrokerView
from escrow_worker.state import heartbeats, records, suspensions
from escrow_worker.state.base import Tx

__all__ = [
    "ActionView",
    "ConsignmentPage",
    "ConsignmentView",
    "CrlView",
    "Overview",
    "PolicyView",
    "UserView",
    "actions",
    "consignment",
    "consignments",
    "crl",
    "overview",
    "policy",
    "users",
]

ReceiverState = Literal["waiting", "released", "denied", "revoked", "expired"]
ConsignmentState = Literal["open", "released", "revoked", "suspended"]
CONSIGNMENT_STATES: tuple[str, ...] = ("open", "released", "revoked", "suspended")
HOUR, DAY = 3600, 86400
#: A worker is alive while its last heartbeat is this recent: three of its
#: sweeps (one every 30 seconds).
ALIVE_SECONDS = 90


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(int(ts), UTC).isoformat()


class Bucket(BaseModel):
    start: str
    releases: int
    denials: int


class WorkerView(BaseModel):
    worker_id: str
    host: str
    pid: int
    started_at: str
    last_seen: str
    handled: int = Field(description="deliveries settled since it started")
    state: Literal["alive", "stale", "stopped"]
    stopped_at: str | None


class Overview(BaseModel):
    escrow: str
    now: str
    users: int
    consignments: int
    suspended: int
    requests_last_hour: int
    requests_last_day: int
    releases_last_hour: int
    denials_last_hour: int
    releases_last_day: int
    denials_last_day: int
    #: 24 hourly buckets, oldest first, for the plot.
    hourly: list[Bucket]
    crl_next_update: str
    policy: Literal["open", "restricted"]
    #: Workers that wrote a heartbeat in the last day, the most recently seen
    #: first: alive if seen within `alive_seconds`, else stale, or stopped.
    workers: list[WorkerView]
    alive_seconds: int = ALIVE_SECONDS
    #: The work queue and dead letters, from RabbitMQ; None when the console
    #: was started without a broker URL.
    broker: BrokerView | None = None


class CertificateView(BaseModel):
    role: str
    fingerprint: str
    serial: str
    not_before: str
    not_after: str
    revoked_at: str | None
    current: bool


class UserView(BaseModel):
    name: str
    kind: str
    groups: list[str]
    created_at: str
    revoked_at: str | None
    operator: bool
    certificates: list[CertificateView]


class CrlView(BaseModel):
    number: int
    this_update: str
    next_update: str
    overdue: bool
    revoked: list[str] = Field(description="serial numbers, hex")


class RuleView(BaseModel):
    from_group: str
    to_group: str


class PolicyView(BaseModel):
    mode: Literal["open", "restricted"]
    rules: list[RuleView]


class ReceiverView(BaseModel):
    name: str
    state: ReceiverState
    notified_at: str | None
    requested_at: str | None
    releases: int
    last_released_at: str | None
    last_denied: str | None
    revoked_at: str | None
    closes_at: str | None


class ConsignmentView(BaseModel):
    consignment_id: str
    sender: str
    mode: str
    state: ConsignmentState
    deposited_at: str
    size: int
    digest: str
    receivers: list[ReceiverView]
    suspended_by: str | None = None
    suspended_reason: str | None = None


class ConsignmentPage(BaseModel):
    query: dict[str, str]
    results: list[ConsignmentView]
    truncated: bool


class ActionView(BaseModel):
    at: str
    operator: str
    action: str
    target: str
    detail: str


async def _count(tx: Tx, sql: str, params: tuple[object, ...] = ()) -> int:
    return int(await tx.fetchval(sql, params) or 0)


async def overview(tx: Tx, *, now: int) -> Overview:
    since = now - DAY
    released = [
        int(r[0])
        for r in await tx.fetchall(
            "SELECT released_at FROM releases WHERE released_at > ?", (since,)
        )
    ]
    denied = [
        int(r[0])
        for r in await tx.fetchall(
            "SELECT at FROM requests WHERE type = 'key-request' AND decision <> 'ok' AND at > ?",
            (since,),
        )
    ]
    hourly = []
    for i in range(24):
        start = now - DAY + i * HOUR
        hourly.append(
            Bucket(
                start=_iso(start) or "",
                releases=sum(start < t <= start + HOUR for t in released),
                denials=sum(start < t <= start + HOUR for t in denied),
            )
        )
    current = await directory.current_crl(tx)
    return Overview(
        escrow=await directory.escrow_name(tx),
        now=_iso(now) or "",
        users=await _count(tx, "SELECT COUNT(*) FROM users WHERE kind = 'user'"),
        consignments=await _count(tx, "SELECT COUNT(*) FROM deposits"),
        suspended=await _count(tx, "SELECT COUNT(*) FROM suspensions"),
        requests_last_hour=await _count(
            tx, "SELECT COUNT(*) FROM requests WHERE at > ?", (now - HOUR,)
        ),
        requests_last_day=await _count(tx, "SELECT COUNT(*) FROM requests WHERE at > ?", (since,)),
        releases_last_hour=sum(t > now - HOUR for t in released),
        denials_last_hour=sum(t > now - HOUR for t in denied),
        releases_last_day=len(released),
        denials_last_day=len(denied),
        hourly=hourly,
        crl_next_update=current.next_update_utc.isoformat() if current.next_update_utc else "",
        policy="restricted" if (await load_policy(tx)).restricted else "open",
        workers=[_worker(h, now) for h in await heartbeats.recent(tx, since=since)],
    )


def _worker(h: heartbeats.Heartbeat, now: int) -> WorkerView:
    state: Literal["alive", "stale", "stopped"] = "stopped"
    if h.stopped_at is None:
        state = "alive" if now - h.last_seen <= ALIVE_SECONDS else "stale"
    return WorkerView(
        worker_id=h.worker_id, host=h.host, pid=h.pid, started_at=_iso(h.started_at) or "",
        last_seen=_iso(h.last_seen) or "", handled=h.handled, state=state,
        stopped_at=_iso(h.stopped_at),
    )  # fmt: skip


async def users(tx: Tx, *, now: int) -> list[UserView]:
    operators = {str(r[0]) for r in await tx.fetchall("SELECT name FROM console_operators")}
    moment = datetime.fromtimestamp(now, UTC)
    out = []
    for user in await directory.list_users(tx):
        current = {directory.select_current(user.certificates, role, moment) for role in Role} - {
            None
        }
        out.append(
            UserView(
                name=user.name,
                kind=user.kind,
                groups=list(user.groups),
                created_at=user.created_at.isoformat(),
                revoked_at=None if user.revoked_at is None else user.revoked_at.isoformat(),
                operator=user.name in operators,
                certificates=[
                    CertificateView(
                        role=c.role.value,
                        fingerprint=c.fingerprint,
                        serial=format(c.serial, "x"),
                        not_before=c.not_before.isoformat(),
                        not_after=c.not_after.isoformat(),
                        revoked_at=None if c.revoked_at is None else c.revoked_at.isoformat(),
                        current=c in current,
                    )
                    for c in user.certificates
                ],
            )
        )
    return out


async def crl(tx: Tx, *, now: int) -> CrlView:
    current = await directory.current_crl(tx)
    next_update = current.next_update_utc
    return CrlView(
        number=await directory.current_crl_number(tx),
        this_update=current.last_update_utc.isoformat(),
        next_update=next_update.isoformat() if next_update else "",
        overdue=next_update is None or next_update.timestamp() < now,
        revoked=[format(r.serial_number, "x") for r in current],
    )


async def policy(tx: Tx) -> PolicyView:
    trust = await load_policy(tx)
    return PolicyView(
        mode="restricted" if trust.restricted else "open",
        rules=[RuleView(from_group=a, to_group=b) for a, b in sorted(trust.rules)],
    )


def _receiver_state(row: records.ReceiverRow) -> ReceiverState:
    if row.state.revoked_at is not None:
        return "revoked"
    if row.state.releases > 0:
        return "released"
    if row.expired_at is not None:
        return "expired"
    return "denied" if row.last_denied else "waiting"


async def consignment(tx: Tx, consignment_id: str) -> ConsignmentView | None:
    row = await records.get_deposit(tx, consignment_id)
    if row is None:
        return None
    receivers = [
        ReceiverView(
            name=r.state.name,
            state=_receiver_state(r),
            notified_at=_iso(r.state.notified_at),
            requested_at=_iso(r.requested_at),
            releases=r.state.releases,
            last_released_at=_iso(r.released_at),
            last_denied=r.last_denied,
            revoked_at=_iso(r.state.revoked_at),
            closes_at=_iso(r.closes_at),
        )
        for r in await records.receivers(tx, consignment_id)
    ]
    suspension = await suspensions.suspended(tx, consignment_id)
    state: ConsignmentState
    if suspension is not None:
        state = "suspended"
    elif receivers and all(r.state == "revoked" for r in receivers):
        state = "revoked"
    elif any(r.releases for r in receivers):
        state = "released"
    else:
        state = "open"
    return ConsignmentView(
        consignment_id=row.consignment_id,
        sender=row.sender,
        mode=row.mode.value,
        state=state,
        deposited_at=_iso(row.deposited_at) or "",
        size=row.consignment_size,
        digest=row.consignment_digest,
        receivers=receivers,
        suspended_by=None if suspension is None else suspension.suspended_by,
        suspended_reason=None if suspension is None else suspension.reason,
    )


async def consignments(
    tx: Tx,
    *,
    consignment_id: str = "",
    sender: str = "",
    receiver: str = "",
    state: str = "",
    limit: int = 100,
) -> ConsignmentPage:
    """Consignments matching every filter given (ids by prefix), newest first."""
    where, params = ["1 = 1"], []
    if consignment_id:
        where.append("d.consignment_id LIKE ?")
        params.append(consignment_id.replace("%", "").replace("_", "") + "%")
    if sender:
        where.append("d.sender = ?")
        params.append(sender)
    if receiver:
        where.append(
            "EXISTS (SELECT 1 FROM deposit_receivers r"
            " WHERE r.consignment_id = d.consignment_id AND r.receiver = ?)"
        )
        params.append(receiver)
    ids = await tx.fetchall(
        f"SELECT d.consignment_id FROM deposits d WHERE {' AND '.join(where)}"  # noqa: S608
        " ORDER BY d.deposited_at DESC, d.consignment_id",
        tuple(params),
    )
    results: list[ConsignmentView] = []
    truncated = False
    for (cid,) in ids:
        view = await consignment(tx, str(cid))
        if view is None or (state and view.state != state):
            continue
        if len(results) == limit:
            truncated = True
            break
        results.append(view)
    query = {"id": consignment_id, "sender": sender, "receiver": receiver, "state": state}
    return ConsignmentPage(query=query, results=results, truncated=truncated)


async def actions(tx: Tx, *, limit: int = 200) -> list[ActionView]:
    rows = await tx.fetchall(
        "SELECT at, operator, action, target, detail FROM console_actions ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        ActionView(
            at=_iso(int(r[0])) or "",
            operator=str(r[1]),
            action=str(r[2]),
            target=str(r[3]),
            detail=str(r[4]),
        )
        for r in rows
    ]

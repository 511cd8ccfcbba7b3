"""The operator's actions in the console, each recorded in `console_actions`
with the operator's name: sign a CSR, revoke a user, issue the CRL, change the
trust policy, rotate the master key, suspend and resume a consignment.

The CA's and the master keyring's work is `ca.operator` and `state.masterkey`,
as on the command line (which log it in the transaction log themselves); the
console's record of the action, naming the operator, is written after the
action commits (a failed action records nothing), in `console_actions` and as
a `console` entry of the transaction log. A suspension and its record commit
together. This module must never return a key
part, a private key or a passphrase.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args

from broker.errors import BrokerError
from broker.pki.csr import parse_csr
from escrow_worker.ca import directory
from escrow_worker.ca.authority import CertificateAuthority
from escrow_worker.ca.operator import Escrow, publish_crl, revoke_user, sign_request
from escrow_worker.ca.policy import add_rule, remove_rule, set_restricted
from escrow_worker.console.operators import (
    ConsoleError,
    Operator,
    Session,
    check_login,
    open_session,
    record_action,
)
from escrow_worker.state import records, suspensions
from escrow_worker.state.base import Tx
from escrow_worker.state.masterkey import rotate_master_key

__all__ = ["REVOCATION_REASONS", "Console", "Reason"]

Reason = Literal["unspecified", "key-compromise", "superseded", "cessation-of-operation"]
REVOCATION_REASONS: tuple[str, ...] = get_args(Reason)
T = TypeVar("T")


@dataclass
class Console:
    """The open escrow the console works on, its unsealed CA and the escrow
    passphrase (for the master keyring), and its clock."""

    escrow: Escrow
    ca: CertificateAuthority
    passphrase: bytes
    clock: object  # Callable[[], datetime]; typed loosely so tests may swap it

    def __repr__(self) -> str:  # never the passphrase or the CA key
        return f"<Console {self.escrow.name}>"

    def now(self) -> datetime:
        now = self.clock()  # type: ignore[operator]
        assert isinstance(now, datetime)
        return now.astimezone(UTC)

    def t(self) -> int:
        return int(self.now().timestamp())

    async def read(self, view: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        """A page's view (`console.views`), read in one store job."""
        return await self.escrow.store.run(view)

    async def read_now(self, view: Callable[..., Coroutine[Any, Any, T]], **kw: Any) -> T:
        """`read` of a view that also takes the console's time, `view(tx, now=...)`."""
        now = self.t()
        return await self.escrow.store.run(lambda tx: view(tx, now=now, **kw))

    async def check_login(self, name: str, passphrase: bytes) -> Operator | None:
        """The active operator `name` if `passphrase` is its console passphrase."""
        return await self.read(lambda tx: check_login(tx, name, passphrase))

    async def start_session(self, operator: Operator, lifetime: int) -> Session:
        """A new session of `operator`, for `lifetime` seconds from now."""
        now = self.t()
        return await self.read(lambda tx: open_session(tx, operator, now=now, lifetime=lifetime))

    async def _record(self, operator: str, action: str, target: str, detail: str = "") -> None:
        now = self.t()

        async def job(tx: Tx) -> None:
            await record_action(tx, operator, action, target, detail, now=now)

        await self.escrow.store.run(job)

    async def sign_csr(self, operator: str, csr: bytes, groups: tuple[str, ...]) -> bytes:
        """Certify a user's request; the PEM bundle (certificates, CA, CRL) for the user."""
        try:
            request = parse_csr(csr)
        except BrokerError as exc:
            raise ConsoleError(exc.message, exc.hint) from exc
        bundle = await sign_request(self.escrow, self.ca, request, groups=groups, now=self.now())
        await self._record(operator, "sign-csr", request.name, f"groups={','.join(groups)}")
        return bundle.to_pem()

    async def revoke(self, operator: str, name: str, reason: str) -> list[str]:
        if reason not in REVOCATION_REASONS:
            raise ConsoleError(
                f"unknown revocation reason {reason!r}", f"one of {', '.join(REVOCATION_REASONS)}"
            )
        if name == operator:
            raise ConsoleError(
                "an operator cannot revoke itself from the console",
                "ask another operator, or use `consign escrow revoke`",
            )
        revoked = await revoke_user(self.escrow, self.ca, name, now=self.now(), reason=reason)
        await self._record(operator, "revoke", name, f"reason={reason}")
        return [c.fingerprint for c in revoked]

    async def issue_crl(self, operator: str) -> int:
        await publish_crl(self.escrow, self.ca, now=self.now())
        number = await self.escrow.store.run(directory.current_crl_number)
        await self._record(operator, "issue-crl", f"crl #{number}")
        return number

    async def set_policy_mode(self, operator: str, restricted: bool) -> None:
        async def job(tx: Tx) -> None:
            await set_restricted(tx, restricted)

        await self.escrow.store.run(job)
        await self._record(operator, "policy-mode", "restricted" if restricted else "open")

    async def change_rule(self, operator: str, add: bool, from_group: str, to_group: str) -> bool:
        async def job(tx: Tx) -> bool:
            if add:
                return await add_rule(tx, from_group, to_group)
            return await remove_rule(tx, from_group, to_group)

        changed = await self.escrow.store.run(job)
        if changed:
            verb = "policy-allow" if add else "policy-deny"
            await self._record(operator, verb, f"{from_group} -> {to_group}")
        return changed

    async def rotate_master_key(self, operator: str) -> tuple[str, int]:
        rotation = await rotate_master_key(
            self.escrow.store, self.escrow.keystore, self.passphrase, now=self.now()
        )
        await self._record(
            operator, "rotate-master-key", rotation.key_id, f"reencrypted={rotation.reencrypted}"
        )
        return rotation.key_id, rotation.reencrypted

    async def suspend(self, operator: str, consignment_id: str, reason: str, on: bool) -> bool:
        """Suspend (`on`) or resume; False if it already was so."""
        now = self.t()

        async def job(tx: Tx) -> bool:
            if await records.get_deposit(tx, consignment_id) is None:
                raise ConsoleError(
                    f"no consignment {consignment_id!r} is deposited here",
                    "search the consignments page for its id",
                )
            if on:
                changed = await suspensions.suspend(
                    tx, consignment_id, by=operator, reason=reason, now=now
                )
            else:
                changed = await suspensions.resume(tx, consignment_id)
            if changed:
                action = "suspend" if on else "resume"
                await record_action(
                    tx,
                    operator,
                    action,
                    consignment_id,
                    reason,
                    now=now,
                    consignment=consignment_id,
                )
            return changed

        return await self.escrow.store.run(job)

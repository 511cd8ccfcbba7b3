"""Helpers for the console tests: an escrow with users and an operator, the
console app on it (driven in-process through httpx, on either store), logins,
and a service beside it to make deposits and key requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from broker import Deposit
from escrow_worker.console import create_app
from escrow_worker.console.operators import add_operator, hash_passphrase
from escrow_worker.console.server import open_console
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS, snapshot
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import EscrowSetup, make_escrow, seal_for

OPERATOR = "olga"
OPERATOR_PASS = "olga's console passphrase"
USERS = ("alice", "bob", "carol", OPERATOR, "otto")
SESSION_SECONDS = 600
#: Every HTML page, the downloads beside them, and every read of the JSON API.
PAGES = ("/", "/users", "/crl", "/policy", "/consignments", "/actions", "/log", "/invoices")
DOWNLOADS = ("/invoices.csv",)
READS = (
    "/api/overview",
    "/api/users",
    "/api/crl",
    "/api/policy",
    "/api/consignments",
    "/api/actions",
    "/api/log",
    "/api/invoices",
    "/api/openapi.json",
)


async def make_operator(
    setup: EscrowSetup,
    name: str = OPERATOR,
    passphrase: str = OPERATOR_PASS,
    certificate: tuple[str, int] | None = None,
) -> None:
    hashed = hash_passphrase(passphrase.encode(), log_n=10)

    async def job(tx: Tx) -> None:
        await add_operator(tx, name, hashed, now=setup.clock.t, certificate=certificate)

    await setup.run(job)


@dataclass
class Desk:
    """The console on an escrow, an httpx client on it, and the escrow's service."""

    setup: EscrowSetup
    client: httpx.AsyncClient
    direct: Direct

    async def login(self, name: str = OPERATOR, passphrase: str = OPERATOR_PASS) -> str:
        """Log in through the API; the bearer token."""
        r = await self.client.post("/api/session", json={"name": name, "passphrase": passphrase})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        assert isinstance(token, str)
        return token

    async def browser_login(self, name: str = OPERATOR, passphrase: str = OPERATOR_PASS) -> str:
        """Log in through the login form, as a browser does; the CSRF token."""
        await self.client.get("/login")
        form = {
            "name": name,
            "passphrase": passphrase,
            "csrf": self.client.cookies.get("consign_console_login", ""),
        }
        r = await self.client.post("/login", data=form)
        assert r.status_code == 303, r.text
        page = await self.client.get("/crl")
        marker = 'name="csrf" value="'
        start = page.text.index(marker) + len(marker)
        return page.text[start : page.text.index('"', start)]

    async def snapshot(self) -> dict[str, list[tuple[object, ...]]]:
        return await self.setup.run(snapshot)

    async def deposit(self, receivers: tuple[str, ...] = ("bob",)) -> Deposit:
        _, deposit = seal_for(self.setup["alice"], [self.setup[r] for r in receivers])
        await self.direct.deposit(deposit)
        return deposit


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def desk(where: Location, **kw: Any) -> AsyncIterator[Desk]:
    setup = await make_escrow(where, USERS)
    await make_operator(setup)
    async with (
        open_console(setup.location, ESCROW_PASS, clock=setup.clock) as console,
        await setup.open_service() as service,
    ):
        app = create_app(
            console,
            session_seconds=kw.get("session_seconds", SESSION_SECONDS),
            broker=kw.get("broker"),
            prices=kw.get("prices"),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://console") as client:
            yield Desk(setup, client, Direct(setup, service))

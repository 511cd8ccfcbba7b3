"""The escrow operators' web console (the patent's administration server, Fig. 8):
`app` (the ASGI application: HTML pages and the JSON API), `pages`, `render`
and `templates/` (the HTML), `api` (the JSON API), `views` (what each page
shows), `ledger` (what the transaction log and invoices pages show),
`actions` (what an operator can do, each recorded), `operators` (who may log
in, sessions), `auth` (resolving every request to an operator), `server`
(HTTPS with the escrow CA's certificates). It works on the same store and
rights as the commands, on SQLite and PostgreSQL.

`Console` and `create_app` load on first use, so that the other `consign
escrow` commands do not import the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from escrow_worker.console.actions import Console
    from escrow_worker.console.app import create_app

__all__ = ["Console", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "Console":
        from escrow_worker.console.actions import Console

        return Console
    if name == "create_app":
        from escrow_worker.console.app import create_app

        return create_app
    raise AttributeError(name)

"""An agent's durable state: one SQLite database in its state directory, and all
the SQL the agents run, as methods of `Store`.

- `spool`: every inbox message, stored (and committed) before it is acked, then
  verified and moved to the table it belongs in. Chunks of a consignment
  mostly skip it: verified as they arrive, their data is written in place
  into the consignment's file and only listed in `chunks` (the database holds
  metadata only) until the consignment is whole.
- `requests`: every signed request, stored before it is published, with the
  verified reply once it came (so a retry re-sends the same bytes, and a reply
  is never decided twice).
- `directory`: certificates and CRL from the escrow's lookups (checked at use).
- `events`, `notifications`, `received`, `sent`, `refused`: what arrived, what
  was sealed and sent, and what was refused and why.
- `batch_items`, `handled`: the items of batch operations, and what the
  unattended receiver opened and handed to its handler (`batches.py`).

`database.py` holds the connection and the tables; `requests.py` and `inbox.py`
the methods, by table. No other module of the client runs SQL. This package
holds no protocol logic and must never store a private key.
"""

from __future__ import annotations

from client.agent.store.batches import BatchItemRow, BatchTables, Handled, NewItem
from client.agent.store.database import DB_NAME, StoreError
from client.agent.store.inbox import ChunkRow, ChunkState, Filing, InboxTables
from client.agent.store.requests import DirectoryEntry, RequestTables

__all__ = [
    "DB_NAME",
    "BatchItemRow",
    "ChunkRow",
    "ChunkState",
    "DirectoryEntry",
    "Filing",
    "Handled",
    "NewItem",
    "Store",
    "StoreError",
]


class Store(RequestTables, InboxTables, BatchTables):
    """The agent database. Use `await Store.open(dir)`, then `close()`."""

"""The escrow's state: the database (`db`: schema, connections, transactions),
its rows (`records`: deposits, receivers, releases, answered requests, the
outbox; `attestations`: receipts, co-signatures and the expiry sweep's
claims), replay protection (`replay`), the master keyring that encrypts
deposited key parts at rest (`masterkey`), and the data directory's layout
(`paths`).

Nothing here decides anything: the handlers do, inside one transaction.
"""

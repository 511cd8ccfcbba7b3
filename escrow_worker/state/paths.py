"""Where an escrow keeps its files: the layout of the escrow data directory.

  escrow.db                    the database (`state.db`): directory, CRL, policy, state
  master.keys                  the master keyring (`state.masterkey`), sealed
  ca.pem / ca.key              CA certificate / sealed Ed25519 CA key
  signing.pem / signing.key    the escrow's own Ed25519 signing certificate / key
  encryption.pem / encryption.key   the escrow's own X25519 certificate / key

This module only names paths; it must never read or write them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from escrow_worker.errors import EscrowError

__all__ = ["EscrowPaths"]


@dataclass(frozen=True)
class EscrowPaths:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "escrow.db"

    def cert(self, stem: str) -> Path:
        return self.root / f"{stem}.pem"

    def key(self, stem: str) -> Path:
        return self.root / f"{stem}.key"

    def require_initialised(self) -> None:
        if not self.cert("ca").is_file() or not self.db.is_file():
            raise EscrowError(
                f"{self.root} is not an escrow data directory",
                "run `consign escrow init` first, or check --escrow-dir / CONSIGN_ESCROW_DIR",
            )

"""One seal or open by the Consignment SDK, in its own process, for seal_vs_age.py.

Prints one JSON line: the seconds spent inside seal() or unseal() (the interpreter
and imports excluded; the parent times the whole process separately).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.deposit import Deposit
from client.consignment import Recipient, Sender, seal, unseal


def main() -> None:
    action, keydir, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    signing = Ed25519PrivateKey.from_private_bytes((keydir / "alice.ed25519").read_bytes())
    bob = X25519PrivateKey.from_private_bytes((keydir / "bob.x25519").read_bytes())
    if action == "seal":
        start = time.perf_counter()
        deposit = seal(
            [src],
            dst,
            sender=Sender("alice", signing),
            receivers=[Recipient("bob", bob.public_key())],
            escrow="bench",
        )
        elapsed = time.perf_counter() - start
        (keydir / "deposit.json").write_text(deposit.model_dump_json())
    else:
        deposit = Deposit.model_validate_json((keydir / "deposit.json").read_text())
        shutil.rmtree(dst, ignore_errors=True)
        start = time.perf_counter()
        unseal(
            src,
            dst,
            identity=bob,
            release=deposit.release_for("bob"),
            sender_key=signing.public_key(),
        )
        elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed}))


if __name__ == "__main__":
    main()

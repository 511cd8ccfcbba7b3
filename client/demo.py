"""A demonstration of sealing and opening on one machine, with no server.

Run it with `python -m client.demo`. It prints each step to stderr. The escrow's
part is simply held in memory here; the escrow service comes with the RabbitMQ
transport.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.deposit import Mode
from client.consignment import Recipient, Sender, consignment_digest, seal, unseal
from client.errors import OpenError


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def run(workdir: Path) -> int:
    alice_signing = Ed25519PrivateKey.generate()
    bob = X25519PrivateKey.generate()
    (workdir / "contract.txt").write_text("Alice sells Bob one consignment engine.\n")
    _say("1. alice seals contract.txt for bob (split key: K1 for bob, K2 for the escrow)")
    deposit = seal(
        [workdir / "contract.txt"],
        workdir / "contract.consignment",
        sender=Sender("alice", alice_signing),
        receivers=[Recipient("bob", bob.public_key())],
        escrow="local-demo",
        mode=Mode.SPLIT,
    )
    _say(f"   consignment {deposit.consignment_id}, {deposit.consignment_size} bytes")
    _say("2. the deposit (K2, policy, digests) goes to the escrow; the file goes to bob")
    digest = consignment_digest(workdir / "contract.consignment")
    _say(f"3. bob checks the digest against the escrow's: {digest == deposit.consignment_digest}")
    release = deposit.release_for("bob")
    _say("4. the escrow releases K2 to bob; bob opens")
    try:
        unseal(
            workdir / "contract.consignment",
            workdir / "opened",
            identity=X25519PrivateKey.generate(),
            release=release,
            sender_key=alice_signing.public_key(),
        )
    except OpenError:
        _say("   (a stranger with K2 but not bob's key cannot open it)")
    opened = unseal(
        workdir / "contract.consignment",
        workdir / "opened",
        identity=bob,
        release=release,
        sender_key=alice_signing.public_key(),
    )
    for entry in opened.files:
        _say(f"   opened {entry.name}: {(workdir / 'opened' / entry.name).read_text().strip()}")
    return 0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="consign-demo-") as tmp:
        return run(Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a key-release worker's CPU goes, from a py-spy profile of it.

    pip install py-spy
    python bench/key_release.py --requests 4000 &      # (or --store postgresql)
    py-spy record -r 200 -f raw --threads -d 40 -o worker.raw \\
        -p "$(pgrep -n -f 'consign escrow worker')"
    python bench/release_profile.py worker.raw --cpu-ms 4.8

Reads py-spy's raw (collapsed) stacks of every thread of the worker and puts
each sample in the first group below whose frames it passes through, leaving
out threads waiting for work (idle executor and store threads, the event
loop's select) and the worker's start-up. With `--cpu-ms` (the bench's
`server_cpu_ms_per_req` of the same load) it also splits that CPU time by the
same shares. A sample is a thread seen running, so a thread inside a blocking
call (an fsync under SQLite's COMMIT) counts as running: the SQL group is an
upper bound of its CPU.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

#: (group, patterns): a pattern matches a frame of the stack, or, prefixed with
#: "leaf:", only its innermost frame.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Ed25519 verify of the request", ("check_envelope_signature",)),
    ("HPKE seal of K2 to the receiver", ("seal_key_part",)),
    ("decrypting the stored part (master key)", ("Vault.decrypt",)),
    ("signing the reply and the event (canonical JSON, Ed25519)", ("Replies.sign",)),
    ("certificate checks (remembered passes, times)", ("check_certificate",)),
    (
        "SQL statements (driver, database, commit)",
        (
            "_SqliteTx.",
            "_PgTx.",
            "Tx.fetch",
            "leaf:_run_batch (",
            "leaf:PostgresStore.run",
            "asyncpg/",
        ),
    ),
    ("directory cache lookups", ("cached (escrow_worker/ca/cache",)),
    (
        "parsing the request (wire, envelope, body)",
        ("SignedEnvelope.from_wire", "SignedEnvelope.unverified", "parse_body"),
    ),
    (
        "decision and records (policy, rows, pydantic)",
        ("handle_key_request", "EscrowService._decide", "EscrowService._store_result"),
    ),
    (
        "publishing the reply and the event with confirms (aio-pika)",
        ("EscrowWorker._send", "EscrowWorker._publish"),
    ),
    ("the ack (aio-pika)", ("Delivery.ack", "_AmqpDelivery._ack", "Delivery.process")),
    (
        "AMQP frames in and out (aiormq reader and writer, confirms, deliveries)",
        (
            "Connection.__reader",
            "Connection.__writer",
            "Channel._reader",
            "FrameReceiver",
            "_on_deliver_frame",
            "consumer (aio_pika",
        ),
    ),
]
OTHER = "other (event loop, worker and service glue)"
#: Frames of the worker's start-up (imports, the passphrase's scrypt, opening
#: the escrow), which py-spy sees if it attached early: left out.
START_UP = ("importlib._bootstrap", "_kdf (broker/pki/sealed", "EscrowService.open")
#: Innermost frames of a thread waiting for work.
IDLE = (
    "_worker (concurrent",
    "SqliteStore._serve (",
    "EpollSelector.select",
    "Thread.run (threading.py",
)


def _matches(pattern: str, frames: list[str]) -> bool:
    if pattern.startswith("leaf:"):
        return pattern[5:] in frames[-1]
    return any(pattern in frame for frame in frames)


def shares(path: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE):
            continue
        if any(part in frame for frame in frames for part in START_UP):
            continue
        group = next((g for g, pats in GROUPS if any(_matches(p, frames) for p in pats)), OTHER)
        counts[group] += int(n)
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--cpu-ms", type=float, help="worker CPU per release, to split")
    args = parser.parse_args()
    counts = shares(args.raw)
    total = sum(counts.values())
    for group, n in sorted(counts.items(), key=lambda item: -item[1]):
        ms = "" if args.cpu_ms is None else f"{args.cpu_ms * n / total:5.2f} ms  "
        print(f"{100 * n / total:5.1f}%  {ms}{group}")
    print(f"{total} samples of running threads")


if __name__ == "__main__":
    main()

"""Seal and open a large random file with Consignment and with age, alternating.

    python bench/seal_vs_age.py [--size-mib 1024] [--rounds 3] [--dir /dev/shm/consign-bench]

Both tools read and write on tmpfs. Each round runs age and Consignment on the same
file, in alternating order. Consignment runs in its own process (bench/_consign_worker.py)
so that its peak RSS is its own; its time is the time spent inside seal()/unseal()
(the SDK call); the process wall time, with interpreter start-up and imports, is
printed too. age's time is its process wall time. Ratios are medians over rounds.
A warm-up round comes first and is not counted. The last line is exactly:

    seal_ratio=<ours/age> open_ratio=<ours/age> peak_rss_mib=<our peak RSS>
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "_consign_worker.py"


def ensure_age() -> str:
    found = shutil.which("age")
    if found:
        return found
    print("age is not installed; installing the Debian package 'age'", file=sys.stderr)
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*prefix, "apt-get", "install", "-y", "-q", "age"], check=True)
    found = shutil.which("age")
    if not found:
        sys.exit("error: could not install age (apt-get install age)")
    return found


def make_input(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n


def run_ours(action: str, keydir: Path, src: Path, dst: Path) -> tuple[float, float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), action, str(keydir), str(src), str(dst)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"error: consignment {action} failed: {err.decode(errors='replace')}")
    return json.loads(out)["seconds"], wall, usage.ru_maxrss


def run_age(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm/consign-bench"))
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3")
    age = ensure_age()
    work: Path = args.dir
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input.bin"
    make_input(src, args.size_mib << 20)

    keydir = work / "keys"
    keydir.mkdir(exist_ok=True)
    raw = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    (keydir / "alice.ed25519").write_bytes(Ed25519PrivateKey.generate().private_bytes(*raw))
    (keydir / "bob.x25519").write_bytes(X25519PrivateKey.generate().private_bytes(*raw))
    age_key = keydir / "age.key"
    age_key.unlink(missing_ok=True)
    subprocess.run(["age-keygen", "-o", str(age_key)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(age_key)], check=True, capture_output=True, text=True
    ).stdout.strip()

    ours_sealed, ours_out = work / "ours.consignment", work / "ours-out"
    age_sealed, age_out = work / "age.age", work / "age-out.bin"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.size_mib} MiB on {work}",
        file=sys.stderr,
    )
    rows = []
    # Round 0 is a warm-up, not counted: the first gigabytes a VM hands out are
    # much slower to touch than pages it has handed out before, for both tools.
    for round_no in range(args.rounds + 1):
        results: dict[str, float] = {}
        rss = 0
        steps = ["age seal", "ours seal", "age open", "ours open"]
        if round_no % 2:
            steps = ["ours seal", "age seal", "ours open", "age open"]
        for step in steps:
            # Every run writes a new file: Consignment seals to a temporary file and
            # renames it (nothing partial on a crash) while age truncates in place, and
            # on a VM pages just freed are cheaper than fresh ones; removing each
            # tool's previous output first gives both the same start.
            previous = {"ours seal": ours_sealed, "age seal": age_sealed, "age open": age_out}
            if step in previous:
                previous[step].unlink(missing_ok=True)
            elif step == "ours open":
                shutil.rmtree(ours_out, ignore_errors=True)
            if step == "ours seal":
                results["ours_seal"], results["ours_seal_wall"], r = run_ours(
                    "seal", keydir, src, ours_sealed
                )
                rss = max(rss, r)
            elif step == "ours open":
                results["ours_open"], results["ours_open_wall"], r = run_ours(
                    "open", keydir, ours_sealed, ours_out
                )
                rss = max(rss, r)
            elif step == "age seal":
                results["age_seal"] = run_age(
                    [age, "-r", recipient, "-o", str(age_sealed), str(src)]
                )
            else:
                results["age_open"] = run_age(
                    [age, "-d", "-i", str(age_key), "-o", str(age_out), str(age_sealed)]
                )
        if not filecmp.cmp(src, ours_out / src.name, shallow=False):
            sys.exit("error: Consignment did not round-trip the file")
        if not filecmp.cmp(src, age_out, shallow=False):
            sys.exit("error: age did not round-trip the file")
        results["rss_mib"] = rss / 1024
        if round_no:
            rows.append(results)
        label = f"round {round_no}" if round_no else "warm-up"
        print(
            f"{label}: seal ours {results['ours_seal']:.3f}s "
            f"(process {results['ours_seal_wall']:.3f}s) age {results['age_seal']:.3f}s | "
            f"open ours {results['ours_open']:.3f}s (process {results['ours_open_wall']:.3f}s) "
            f"age {results['age_open']:.3f}s | our peak RSS {results['rss_mib']:.1f} MiB",
            file=sys.stderr,
        )
    seal_ratio = statistics.median(r["ours_seal"] / r["age_seal"] for r in rows)
    open_ratio = statistics.median(r["ours_open"] / r["age_open"] for r in rows)
    seal_wall = statistics.median(r["ours_seal_wall"] / r["age_seal"] for r in rows)
    open_wall = statistics.median(r["ours_open_wall"] / r["age_open"] for r in rows)
    peak = max(r["rss_mib"] for r in rows)
    print(
        f"with interpreter start-up: seal_ratio={seal_wall:.2f} open_ratio={open_wall:.2f}",
        file=sys.stderr,
    )
    for path in (ours_sealed, age_sealed, age_out):
        path.unlink(missing_ok=True)
    shutil.rmtree(ours_out, ignore_errors=True)
    print(f"seal_ratio={seal_ratio:.2f} open_ratio={open_ratio:.2f} peak_rss_mib={peak:.1f}")


if __name__ == "__main__":
    main()

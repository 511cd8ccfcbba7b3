"""Summarise a py-spy "raw" profile (bench/batch.py --profile): the functions
by samples in which they were on the stack (inclusive) and at its top (self),
so the biggest costs of a process show in a few lines.

    python bench/spy_summary.py FILE [--top 40] [--filter TEXT]

`--filter` counts only the stacks with TEXT in them (e.g. a function name).
Stacks that end waiting (in the event loop's select, an idle thread pool or
aiosqlite thread, a lock or condition) are left out: py-spy attached without
stopping the process counts some of them as busy.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_WAITS = (
    "EpollSelector.select",
    "_connection_worker_thread",
    "_worker (concurrent/futures/thread.py)",
    "Condition.wait",
    "Semaphore.acquire",
    "Event.wait",
    "Thread.join",
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--filter", default="")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or args.filter not in stack:
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";")]
        if any(frames[-1].startswith(w) or w in frames[-1] for w in _WAITS):
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    print(f"{total} samples")
    print("inclusive:")
    for name, n in inclusive.most_common(args.top):
        print(f"{n / total * 100:6.1f}%  {name}")
    print("self:")
    for name, n in own.most_common(args.top // 2):
        print(f"{n / total * 100:6.1f}%  {name}")


if __name__ == "__main__":
    main()

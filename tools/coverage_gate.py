"""Branch coverage per package, and a floor for the security-relevant modules.

Run after `python -m pytest --cov` (which writes `.coverage`, subprocesses
included): prints the branch coverage of broker, client and escrow_worker and
of each module in `FLOORS`, and exits 1 when one of those modules is below its
floor. The floors are the issue's 90 % where the suite reaches it, and the
measured figure otherwise (docs/testing.md names the branches still missing),
so a test removed or a check added without its test fails CI.

    python tools/coverage_gate.py            # report and check
    python tools/coverage_gate.py --missing  # also list each module's missing branches
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[1]

#: The modules issue 18 names (envelope, deposit, certificate checks, request
#: authentication, decisions, handlers, opening, manifest, agent reply
#: verification), with the least branch coverage CI accepts for each, in percent.
FLOORS: dict[str, float] = {
    "broker/canonical.py": 90,
    "broker/envelope.py": 90,
    "broker/deposit.py": 88,
    "broker/pki/checks.py": 90,
    "escrow_worker/handlers/auth.py": 90,
    "escrow_worker/handlers/decide.py": 90,
    "escrow_worker/handlers/deposit.py": 90,
    "escrow_worker/handlers/release.py": 90,
    "escrow_worker/handlers/common.py": 89,
    "client/consignment.py": 90,
    "client/format/keys.py": 80,
    "client/format/header.py": 80,
    "client/format/manifest.py": 74,
    "client/agent/verify.py": 84,
}
PACKAGES = ("broker", "client", "escrow_worker")


def _percent(covered: int, total: int) -> float:
    return 100.0 * covered / total if total else 100.0


def load(data_file: Path) -> dict[str, dict[str, object]]:
    """coverage.py's JSON report of `data_file`, by path relative to the root."""
    cov = coverage.Coverage(data_file=str(data_file), config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        files = json.loads(out.read_text())["files"]
    result: dict[str, dict[str, object]] = {}
    for name, entry in files.items():
        path = Path(name)
        rel = path.relative_to(ROOT) if path.is_absolute() else path
        result[rel.as_posix()] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-file", type=Path, default=ROOT / ".coverage")
    parser.add_argument("--missing", action="store_true", help="list missing branches")
    args = parser.parse_args(argv)
    if not args.data_file.exists():
        print(f"coverage: no data in {args.data_file}; run `python -m pytest --cov` first")
        return 1
    files = load(args.data_file)
    print("branch coverage by package:")
    for package in PACKAGES:
        entries = [e["summary"] for n, e in files.items() if n.startswith(package + "/")]
        covered = sum(int(s["covered_branches"]) for s in entries)  # type: ignore[index]
        total = sum(int(s["num_branches"]) for s in entries)  # type: ignore[index]
        print(f"  {package:14} {_percent(covered, total):5.1f} %  ({covered}/{total} branches)")
    print("security-relevant modules (floor):")
    failed = []
    for module, floor in FLOORS.items():
        entry = files.get(module)
        if entry is None:
            failed.append(f"{module} was not measured")
            continue
        summary = entry["summary"]
        covered = int(summary["covered_branches"])  # type: ignore[index]
        total = int(summary["num_branches"])  # type: ignore[index]
        percent = _percent(covered, total)
        mark = "ok " if percent >= floor else "LOW"
        print(f"  {mark} {module:38} {percent:5.1f} % (floor {floor:g} %)")
        if args.missing and entry.get("missing_branches"):
            print(f"      missing: {entry['missing_branches']}")
        if percent < floor:
            failed.append(f"{module}: {percent:.1f} % of branches, floor {floor:g} %")
    for line in failed:
        print(f"coverage: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

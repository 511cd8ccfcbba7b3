"""The architecture: `__all__` complete and true in every package (httpx
test_exported_members), one error base, and dependencies pointing one way, by
the import-linter contract in pyproject.toml and by what really gets imported."""

from __future__ import annotations

import importlib
import types

import pytest


@pytest.mark.parametrize("package", ["broker", "client", "escrow_worker", "client.cli"])
def test_all_is_complete(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    # dir(), not vars(): broker and client resolve their exports lazily (PEP 562).
    public = {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(getattr(module, name), types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING"}
    }
    assert exported == public
    assert len(exported) == len(module.__all__)  # no duplicates


@pytest.mark.parametrize(
    ("package", "base"),
    [("broker", "BrokerError"), ("client", "ClientError"), ("escrow_worker", "EscrowError")],
)
def test_one_base_error_per_package(package: str, base: str) -> None:
    from broker.errors import Error

    module = importlib.import_module(package)
    root = getattr(module, base)
    assert issubclass(root, Error)  # the one base of every error on purpose
    errors = [
        getattr(module, name)
        for name in module.__all__
        if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), Exception)
    ]
    assert all(issubclass(e, root) for e in errors if e is not Error)
    err = root("message", "hint")
    assert (err.message, err.hint) == ("message", "hint")
    assert root("only a message").hint is None


def test_broker_imports_neither_other_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, broker, broker.envelope, broker.errors; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('client', 'escrow_worker')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_escrow_worker_never_imports_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, escrow_worker, escrow_worker.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'client'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_import_contract_holds() -> None:
    """`lint-imports` (the contracts in pyproject.toml) passes: broker imports
    neither package, escrow_worker never imports client, client imports
    escrow_worker only in the demo, and each package's layers point down."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    root = Path(__file__).parents[2]
    out = subprocess.run([lint], capture_output=True, text=True, check=False, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" in out.stdout
    assert "0 broken" in out.stdout


def test_a_user_program_loads_no_escrow_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from client import SenderAgent, ReceiverAgent, seal, unseal; "
        "import client.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'escrow_worker'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

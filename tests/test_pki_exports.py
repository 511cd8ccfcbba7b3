"""`__all__` is complete and true in every package (httpx test_exported_members)."""

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

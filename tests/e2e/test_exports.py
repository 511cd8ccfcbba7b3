"""__all__ is complete: every public class and function a module defines is in it,
and every name in it resolves (httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "client",
    "client.consignment",
    "client.errors",
    "client.agent",
    "client.home",
    "client.trust",
    "broker",
    "broker.deposit",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, member) for member in exported)
    defined_here = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == name
    }
    assert defined_here <= exported, sorted(defined_here - exported)


@pytest.mark.parametrize("package", ["client", "broker"])
def test_package_reexports_its_public_modules(package: str) -> None:
    module = importlib.import_module(package)
    for sub in {
        "client": [
            "client.consignment",
            "client.errors",
            "client.agent",
            "client.home",
            "client.trust",
        ],
        "broker": ["broker.deposit"],
    }[package]:
        assert set(importlib.import_module(sub).__all__) <= set(module.__all__)


def test_sealing_does_not_import_the_transports_or_the_escrow() -> None:
    """`import client.consignment` stays light: no aio-pika, no escrow worker."""
    import subprocess
    import sys

    code = (
        "import sys, client.consignment; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aio_pika', 'aiormq', "
        "'escrow_worker', 'aiosqlite', 'click'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

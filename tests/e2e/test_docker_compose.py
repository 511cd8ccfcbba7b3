"""docker-compose.yml is valid YAML and names only commands, options and
environment variables the code really has (no Docker engine here to run it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from yarl import URL

from broker import BrokerSettings
from broker.console import IDENTITY_PASSPHRASE_ENV
from client.cli import main
from escrow_worker.cli.options import ESCROW_PASSPHRASE_ENV
from escrow_worker.cli.worker import worker

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def known_environment() -> set[str]:
    """Every CONSIGN_* variable the code reads."""
    prefix = BrokerSettings.model_config.get("env_prefix", "")
    names = {f"{prefix}{field}".upper() for field in BrokerSettings.model_fields}
    envvars = {p.envvar for p in worker.params if isinstance(p.envvar, str)}
    return names | envvars | {ESCROW_PASSPHRASE_ENV, IDENTITY_PASSPHRASE_ENV}


def resolve(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> click.Command:
    """Parse `argv` exactly as `consign` would (without running it)."""
    assert argv[0] == "consign"
    command: click.Command = main
    args = argv[1:]
    while isinstance(command, click.Group) and args:
        sub = command.get_command(click.Context(command), args[0])  # lazy groups too
        if sub is None:
            break
        args.pop(0)
        command = sub
    assert not isinstance(command, click.Group), f"{argv} names no command"
    with monkeypatch.context() as m:
        for name in list(os.environ):
            if name.startswith("CONSIGN_"):
                m.delenv(name)
        for name, value in env.items():
            m.setenv(name, str(value))
        command.make_context(" ".join(argv[:3]), list(args))  # raises on a bad option
    return command


def test_compose_is_valid_and_runs_rabbitmq_with_the_management_ui(compose: dict[str, Any]) -> None:
    rabbit = compose["services"]["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3.")
    assert "management" in rabbit["image"]
    assert "15672:15672" in rabbit["ports"]
    assert "5672:5672" in rabbit["ports"]


def test_postgresql_serves_the_escrow_state(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    env = postgres["environment"]
    url = URL(compose["services"]["worker-1"]["environment"]["CONSIGN_ESCROW_DB"])
    assert url.scheme == "postgresql"
    assert url.host == "postgres"
    assert (url.user, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert url.path.lstrip("/") == env["POSTGRES_DB"]
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_two_workers_share_only_the_database_and_the_broker(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    workers = {
        name: s for name, s in services.items() if s.get("command", [])[1:3] == ["escrow", "worker"]
    }
    assert len(workers) >= 2
    urls = {s["environment"]["CONSIGN_ESCROW_DB"] for s in workers.values()}
    assert len(urls) == 1  # one database for all of them
    for service in workers.values():
        env = service["environment"]
        # Workers on several hosts share no file system: no volume, no directory.
        assert "volumes" not in service
        assert "CONSIGN_ESCROW_DIR" not in env
        assert env["CONSIGN_AMQP_URL"].startswith("amqp://")
        assert "@rabbitmq:" in env["CONSIGN_AMQP_URL"]
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["stop_signal"] == "SIGTERM"
        assert resolve(service["command"], env, monkeypatch) is worker


def test_init_service_initialises_the_same_database(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    init = compose["services"]["init"]
    assert init["command"][:3] == ["consign", "escrow", "init"]
    resolve(init["command"], init["environment"], monkeypatch)
    worker_env = compose["services"]["worker-1"]["environment"]
    assert init["environment"]["CONSIGN_ESCROW_DB"] == worker_env["CONSIGN_ESCROW_DB"]


def test_the_console_serves_the_same_database(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow_worker.cli.console import console

    service = compose["services"]["console"]
    assert resolve(service["command"], service["environment"], monkeypatch) is console
    worker_env = compose["services"]["worker-1"]["environment"]
    assert service["environment"]["CONSIGN_ESCROW_DB"] == worker_env["CONSIGN_ESCROW_DB"]
    port = service["command"][service["command"].index("--port") + 1]
    assert f"{port}:{port}" in service["ports"]
    assert service["command"][service["command"].index("--host") + 1] == "0.0.0.0"  # noqa: S104


def test_only_real_environment_variables_and_secrets(compose: dict[str, Any]) -> None:
    known = known_environment()
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("CONSIGN_"):
                assert variable in known, (name, variable)
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
            path = f"/run/secrets/{secret}"
            assert path in service["command"], "a secret nobody reads"
    secret_file = compose["secrets"]["escrow_passphrase"]["file"].removeprefix("./")
    assert secret_file in (ROOT / ".gitignore").read_text()
    assert secret_file in (ROOT / "README.md").read_text()


def test_the_image_installs_the_consign_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    for package in ("broker", "client", "escrow_worker"):
        assert f"COPY {package} {package}" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'consign = "client.cli:main"' in pyproject

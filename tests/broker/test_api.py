"""The public surface of `broker`: exports, names, validation, the factory, layering."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import broker
import broker.errors
import broker.transport.base
from broker import (
    AmqpTransport,
    BrokerError,
    Inbox,
    InProcessTransport,
    Message,
    TransportConfig,
    connect_transport,
)
from broker.errors import InvalidName, TransportError

BROKER_DIR = Path(broker.__file__).parent


@pytest.mark.parametrize("module", [broker, broker.errors, broker.transport.base])
def test_all_lists_every_public_name(module: types.ModuleType) -> None:
    # A submodule exports what it defines; the package also re-exports.
    origin = "broker" if module is broker else module.__name__
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and (getattr(value, "__module__", None) or "").startswith(origin)
    }
    assert set(module.__all__) >= public
    for name in module.__all__:
        assert hasattr(module, name), name


def test_broker_imports_neither_client_nor_escrow_worker() -> None:
    for path in BROKER_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in {"client", "escrow_worker"}, (path, name)


def test_connect_transport_picks_the_implementation() -> None:
    assert isinstance(connect_transport(None), InProcessTransport)
    assert isinstance(connect_transport("memory://"), InProcessTransport)
    amqp = connect_transport("amqp://guest:secret@localhost:5672/")
    assert isinstance(amqp, AmqpTransport)
    assert "secret" not in amqp.url
    config = TransportConfig(prefix="other")
    assert connect_transport(None, config).config is config
    with pytest.raises(BrokerError, match="unsupported") as failure:
        connect_transport("http://localhost/")
    assert failure.value.hint


def test_names_derive_from_the_prefix() -> None:
    config = TransportConfig(prefix="acme")
    assert config.escrow_queue == "acme.escrow.requests"
    assert config.inbox_exchange == "acme.inbox"
    assert config.inbox_queue("alice@example.org") == "acme.inbox.alice@example.org"
    assert config.dead_letter_exchange == "acme.dlx"
    assert config.dead_letter_queue == "acme.dead-letters"
    assert TransportConfig().escrow_queue == "consign.escrow.requests"
    assert TransportConfig(escrow_queue="escrow.work").escrow_queue == "escrow.work"
    assert TransportConfig().max_message_size == 1024 * 1024


@pytest.mark.parametrize("bad", ["", "a b", "../x", "a/b", ".hidden", "x" * 121, "é"])
def test_unusable_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName) as failure:
        Inbox(bad)
    assert isinstance(failure.value, TransportError)
    assert failure.value.hint
    with pytest.raises(InvalidName):
        TransportConfig().inbox_queue(bad)
    with pytest.raises(InvalidName):
        TransportConfig(prefix=bad)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"message_id": ""}, ValueError),
        ({"message_id": "x" * 256}, ValueError),
        ({"type": ""}, ValueError),
        ({"correlation_id": ""}, ValueError),
        ({"headers": {"x-delivery-count": "0"}}, ValueError),
        ({"headers": {"X-Death": "0"}}, ValueError),
        ({"headers": {"n": 1}}, TypeError),
        ({"body": "text"}, TypeError),
    ],
)
def test_message_refuses_what_the_wire_cannot_carry(
    fields: dict[str, object], error: type[Exception]
) -> None:
    base: dict[str, object] = {"body": b"", "message_id": "m-1", "type": "t.v1"}
    with pytest.raises(error):
        Message(**(base | fields))  # type: ignore[arg-type]


def test_message_copies_its_headers() -> None:
    headers = {"a": "1"}
    sent = Message(body=b"", message_id="m-1", type="t.v1", headers=headers)
    headers["a"] = "2"
    assert sent.headers == {"a": "1"}


def test_broker_error_carries_message_and_hint() -> None:
    error = BrokerError("it broke", hint="do this")
    assert (str(error), error.message, error.hint) == ("it broke", "it broke", "do this")
    assert BrokerError("plain").hint is None

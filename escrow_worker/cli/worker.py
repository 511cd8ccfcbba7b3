"""`consign escrow worker/rotate-master-key/dead-letters`: running the escrow.

Thin wrappers: `worker` runs `EscrowWorker` until SIGINT or SIGTERM; the broker
comes from `BrokerSettings` (CONSIGN_AMQP_URL, CONSIGN_QUEUE_PREFIX,
CONSIGN_DELIVERY_LIMIT, CONSIGN_MAX_MESSAGE_SIZE) or `--amqp-url`. This module
must never log or print a message body, a key, a passphrase or a broker password.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from broker import (
    BrokerError,
    BrokerSettings,
    Delivery,
    SignedEnvelope,
    Transport,
    TransportConfig,
    connect_transport,
)
from broker.console import emit, json_option, now, read_passphrase, run, say
from broker.errors import QueueNotFound
from escrow_worker.ca.operator import open_escrow
from escrow_worker.cli.options import (
    ESCROW_PASSPHRASE_ENV,
    escrow_location,
    escrow_passphrase_option,
)
from escrow_worker.errors import EscrowError
from escrow_worker.service import EscrowService
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import Rotation, rotate_master_key
from escrow_worker.worker import EscrowWorker

AMQP_URL_ENV = "CONSIGN_AMQP_URL"

amqp_url_option = click.option(
    "--amqp-url",
    metavar="URL",
    help=f"RabbitMQ URL, amqp://user:password@host:5672/ [else env {AMQP_URL_ENV}].",
)


def _broker(amqp_url: str | None) -> tuple[str, TransportConfig]:
    settings = BrokerSettings.from_env()
    url = amqp_url or settings.url
    if not url or url.startswith("memory:"):
        raise EscrowError(
            "no RabbitMQ URL given",
            f"set {AMQP_URL_ENV} or pass --amqp-url amqp://user:password@host:5672/",
        )
    return url, settings.transport_config()


@click.command("worker")
@escrow_location
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@amqp_url_option
@click.option(
    "--prefetch",
    type=click.IntRange(min=1, max=1000),
    default=32,
    show_default=True,
    help="Requests handled at once.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="info logs one line per request on stderr.",
)
def worker(
    location: Location,
    escrow_passphrase_file: Path | None,
    amqp_url: str | None,
    prefetch: int,
    log_level: str,
) -> None:
    """Run an escrow worker: answer lookups, deposits, key requests,
    revocations and status requests from the escrow work queue on RabbitMQ.

    Run as many as you like, on one host or many, sharing the escrow directory:
    they compete for requests and never decide one twice. The queue names come
    from CONSIGN_QUEUE_PREFIX; the escrow passphrase from
    CONSIGN_ESCROW_PASSPHRASE or --passphrase-file. Logs one line per request on
    stderr (request id, type, requester, decision, time), never a key or a body.
    Stops cleanly on SIGINT or SIGTERM, finishing the requests in progress.
    """
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")
    url, config = _broker(amqp_url)
    _configure_logging(log_level)
    run(_serve(location, passphrase, url, config, prefetch))
    say("OK escrow worker stopped")


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("escrow_worker").setLevel(level.upper())
    logging.getLogger("broker").setLevel(level.upper())


async def _serve(
    location: Location, passphrase: bytes, url: str, config: TransportConfig, prefetch: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with (
            await EscrowService.open(location, passphrase) as service,
            connect_transport(url, config) as transport,
        ):
            say(f"escrow {service.name!r} serving {config.escrow_queue}; SIGTERM stops it")
            await EscrowWorker(service, transport, prefetch=prefetch).run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command("rotate-master-key")
@escrow_location
@escrow_passphrase_option("--passphrase-file", "--escrow-passphrase-file")
@json_option
def rotate_master_key_command(
    location: Location, escrow_passphrase_file: Path | None, as_json: bool
) -> None:
    """Create a new master key, re-encrypt every stored key part under it in one
    transaction, and retire the old key from master.keys.

    Workers may keep running: one that meets the new key reloads master.keys
    by itself. Back up master.keys and escrow.db together, afterwards.
    """
    passphrase = read_passphrase(escrow_passphrase_file, ESCROW_PASSPHRASE_ENV, "escrow")
    rotation: Rotation = run(_rotate(location, passphrase))
    emit(
        {
            "master_key_id": rotation.key_id,
            "retired": list(rotation.retired),
            "reencrypted": rotation.reencrypted,
        },
        as_json,
    )
    say(
        f"OK master key {rotation.key_id} is current; "
        f"{rotation.reencrypted} stored part(s) re-encrypted"
    )


async def _rotate(location: Location, passphrase: bytes) -> Rotation:
    async with open_escrow(location) as esc:
        return await rotate_master_key(esc.store, esc.keystore, passphrase, now=now())


def _summary(delivery: Delivery) -> dict[str, Any]:
    """What an operator may see of a dead letter: never its body."""
    info: dict[str, Any] = {
        "message_id": delivery.message_id,
        "amqp_type": delivery.type,
        "size": len(delivery.body),
        "reason": delivery.dead_letter.reason if delivery.dead_letter else None,
        "from_queue": delivery.dead_letter.queue if delivery.dead_letter else None,
        # why an undeliverable reply could not be delivered (claims, unsigned)
        "detail": delivery.dead_letter.detail if delivery.dead_letter else None,
    }
    try:
        claimed = SignedEnvelope.from_wire(delivery.body).unverified()
    except BrokerError:
        info["envelope"] = None
    else:
        # Claims only: nothing here was authenticated.
        info["envelope"] = {
            "type": claimed.type,
            "version": claimed.version,
            "request_id": claimed.request_id,
            "reply_to": claimed.reply_to,
            "signer": claimed.signer,
            "issued_at": claimed.issued_at,
        }
    return info


async def _peek(url: str, config: TransportConfig, limit: int) -> list[dict[str, Any]]:
    """Read up to `limit` dead letters without settling them; closing the
    transport returns every one to the queue."""
    found: list[dict[str, Any]] = []
    transport: Transport
    async with connect_transport(url, config) as transport:
        for _ in range(limit):
            try:
                delivery = await transport.get(config.dead_letter_queue)
            except QueueNotFound:
                break
            if delivery is None:
                break
            found.append(_summary(delivery))
    return found


def _text(queue: str, messages: list[dict[str, Any]], complete: bool) -> str:
    count = f"{len(messages)}" if complete else f"at least {len(messages)}"
    lines = [f"{queue}: {count} dead letter(s)"]
    for m in messages:
        env = m["envelope"]
        claim = (
            "unparseable"
            if env is None
            else f"{env['type']} v{env['version']} {env['request_id']} reply_to={env['reply_to']}"
        )
        lines.append(
            f"  {m['message_id'] or '-'}  {m['reason'] or '-'} from {m['from_queue'] or '-'}"
            f"  {m['size']} bytes  {claim}"
        )
    return "\n".join(lines)


@click.command("dead-letters")
@amqp_url_option
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=1000),
    default=100,
    show_default=True,
    help="Look at no more than this many.",
)
@json_option
def dead_letters(amqp_url: str | None, limit: int, as_json: bool) -> None:
    """Count and list the messages in the dead-letter queue
    ({CONSIGN_QUEUE_PREFIX}.dead-letters): requests that could not be parsed or
    were too large, and messages returned more often than the delivery limit.

    Shows for each its message id, why and where from it was dead-lettered, its
    size and what its envelope claims (unauthenticated), never its body. The
    messages stay in the queue.
    """
    url, config = _broker(amqp_url)
    messages = run(_peek(url, config, limit))
    complete = len(messages) < limit
    data = {
        "queue": config.dead_letter_queue,
        "count": len(messages),
        "complete": complete,
        "messages": messages,
    }
    emit(data, as_json, _text(config.dead_letter_queue, messages, complete))


COMMANDS = (worker, rotate_master_key_command, dead_letters)

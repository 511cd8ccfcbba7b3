"""Run the escrow worker in its own process for the CLI tests, until SIGTERM:
`python -m tests.worker_process` with CONSIGN_ESCROW_DIR,
CONSIGN_ESCROW_PASSPHRASE, CONSIGN_AMQP_URL and CONSIGN_QUEUE_PREFIX set. It
prints "ready" on stdout once it consumes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from broker import BrokerSettings, connect_transport
from escrow_worker import EscrowService, EscrowWorker


async def main() -> None:
    settings = BrokerSettings()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    escrow_dir = Path(os.environ["CONSIGN_ESCROW_DIR"])
    passphrase = os.environ["CONSIGN_ESCROW_PASSPHRASE"].encode()
    async with (
        connect_transport(settings.url, settings.transport_config()) as transport,
        await EscrowService.open(escrow_dir, passphrase) as service,
    ):
        await transport.declare_escrow_queues()
        print("ready", flush=True)
        await EscrowWorker(service, transport).run(stop)


if __name__ == "__main__":
    asyncio.run(main())

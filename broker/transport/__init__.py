"""How agents and escrow workers move messages: the contract (`base`), RabbitMQ
(`amqp`), the in-process broker of the embedded default (`memory`), the
settings from the environment (`settings`) and `connect_transport(url)`
(`connect`). The public names are exported once, by `broker`.

Importing the contract never loads aio-pika; `amqp` is imported only when an
AMQP transport is asked for.
"""

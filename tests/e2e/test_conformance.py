"""Conformance: an agent written from the documents alone talks to a real escrow
worker over RabbitMQ (issue 17).

This module imports none of our message, envelope, deposit, canonical or HPKE
code: it builds every message from docs/examples/ and docs/schemas/, encodes
canonical JSON with `json`, signs and seals with `cryptography` as
docs/identity.md and docs/protocol.md say, declares its inboxes with aio-pika
using the arguments of docs/asyncapi.json, and validates every message both
ways with `jsonschema`. Only the escrow (directory, worker) comes from our code.
It covers every request type, its answer and its refusals, the refusals before
any decision, and a malformed envelope that is dead-lettered with no answer.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jsonschema import Draft202012Validator

from tests.escrow_worker.helpers import EscrowSetup, make_escrow, running_worker
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONTEXT = b"consignment/envelope/v1\x00"
SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
WAIT = 10.0


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((DOCS / "schemas" / name).read_text()))


def valid(name: str, value: Any) -> None:
    errors = [e.message for e in schema(name).iter_errors(value)]
    assert not errors, f"{name}: {errors}"


EXAMPLES = {
    e["type"]: e for e in json.loads((DOCS / "examples/index.json").read_text())["examples"]
}
ASYNCAPI = json.loads((DOCS / "asyncapi.json").read_text())


class DocAgent:
    """An agent from the documents: its keys, its inbox, signed requests."""

    def __init__(self, world: World, name: str) -> None:
        identity = world.setup[name]
        self.world = world
        self.name = name
        self.key: Ed25519PrivateKey = identity.signing_key
        self.decryption: X25519PrivateKey = identity.encryption_key
        der = identity.signing_certificate.public_bytes(Encoding.DER)
        self.signer = hashlib.sha256(der).hexdigest()  # docs/identity.md: the fingerprint
        self.inbox = f"{world.prefix}.inbox.{name}"
        self.pending: list[dict[str, Any]] = []

    def envelope(self, type_: str, body: dict[str, Any], **change: Any) -> dict[str, Any]:
        """The example envelope of `type_`, made ours (fresh id, nonce and times)."""
        t = self.world.setup.clock.t
        envelope = copy.deepcopy(EXAMPLES[type_]["envelope"]) if type_ in EXAMPLES else {}
        envelope.update(
            type=type_,
            version=1,
            request_id=uuid.uuid4().hex,
            nonce=b64(os.urandom(16)),
            issued_at=t,
            expires_at=t + 600,
            audience=self.world.escrow,
            reply_to=self.name,
            signer=self.signer,
            body=body,
        )
        envelope.update(change)
        return envelope

    def wire(self, envelope: dict[str, Any], key: Ed25519PrivateKey | None = None) -> bytes:
        payload = canonical(envelope)
        signature = (key or self.key).sign(CONTEXT + payload)
        return canonical({"payload": b64(payload), "signature": b64(signature), "v": 1})

    async def send(self, data: bytes, request_id: str, type_: str) -> None:
        channel = self.world.channel
        await channel.default_exchange.publish(
            aio_pika.Message(
                data,
                message_id=request_id,
                type=f"{type_}.v1",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.world.requests,
            mandatory=True,
        )

    async def ask(
        self, type_: str, body: dict[str, Any], *, checked: bool = True, **change: Any
    ) -> dict[str, Any]:
        """Send a request (schema-checked) and return the verified reply's envelope."""
        envelope = self.envelope(type_, body, **change)
        if checked and type_ in EXAMPLES:
            valid(f"{type_}.v1.schema.json", body)
        return await self.ask_raw(self.wire(envelope), envelope["request_id"], type_)

    async def ask_raw(self, data: bytes, request_id: str, type_: str) -> dict[str, Any]:
        await self.send(data, request_id, type_)
        return await self.reply(request_id)

    async def reply(self, request_id: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while loop.time() < deadline:
            for envelope in self.pending:
                if envelope["body"].get("in_reply_to") == request_id:
                    self.pending.remove(envelope)
                    return envelope
            message = await self.world.queue(self.inbox).get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            self.pending.append(self.world.verify(message.body, to=self.name))
        raise AssertionError(f"no reply to {request_id}")


class World:
    """The escrow under test, and the documents' view of the broker."""

    def __init__(self, setup: EscrowSetup, prefix: str, channel: aio_pika.abc.AbstractChannel):
        self.setup = setup
        self.escrow = setup.name
        self.prefix = prefix
        self.channel = channel
        self.requests = ASYNCAPI["channels"]["escrowRequests"]["address"].format(prefix=prefix)
        self.escrow_signing: Ed25519PublicKey | None = None
        self.queues: dict[str, aio_pika.abc.AbstractQueue] = {}
        self.ca = x509.load_pem_x509_certificate((setup.directory / "ca.pem").read_bytes())

    def queue(self, name: str) -> aio_pika.abc.AbstractQueue:
        return self.queues[name]

    async def declare_inbox(self, name: str, delivery_limit: int) -> str:
        inbox = ASYNCAPI["channels"]["inbox"]
        address = inbox["address"].format(prefix=self.prefix, name=name)
        arguments = {
            k: v.format(prefix=self.prefix) if isinstance(v, str) else v
            for k, v in inbox["bindings"]["amqp"]["x-arguments"].items()
        }
        arguments["x-delivery-limit"] = delivery_limit  # this deployment's, not the default
        queue = await self.channel.declare_queue(address, durable=True, arguments=arguments)
        await queue.bind(f"{self.prefix}.inbox", routing_key=name)
        self.queues[address] = queue
        return address

    def verify(self, data: bytes, *, to: str) -> dict[str, Any]:
        """Check a message from the escrow: schemas, canonical form, signature, audience."""
        wire = json.loads(data)
        valid("wire.schema.json", wire)
        assert canonical(wire) == data
        payload = base64.b64decode(wire["payload"], validate=True)
        envelope: dict[str, Any] = json.loads(payload)
        assert canonical(envelope) == payload
        valid("envelope.schema.json", envelope)
        valid(f"{envelope['type']}.v{envelope['version']}.schema.json", envelope["body"])
        assert envelope["audience"] == to
        if self.escrow_signing is None:  # the lookup of the escrow's own name: its certificate
            body = envelope["body"]
            cert = x509.load_pem_x509_certificate(body["signing_certificate"].encode())
            cert.verify_directly_issued_by(self.ca)
            assert body["name"] == self.escrow
            key = cert.public_key()
            assert isinstance(key, Ed25519PublicKey)
            self.escrow_signing = key
            der = cert.public_bytes(Encoding.DER)
            assert envelope["signer"] == hashlib.sha256(der).hexdigest()
        self.escrow_signing.verify(base64.b64decode(wire["signature"]), CONTEXT + payload)
        return envelope


def deposit_json(
    world: World, receivers: dict[str, bytes], *, sender: str = "alice", **attributes: Any
) -> tuple[str, bytes, dict[str, Any]]:
    """A split-mode deposit from the example's shape: (id, K2, deposit JSON)."""
    value = json.loads((DOCS / "examples/deposit-plaintext.json").read_bytes())
    cid = os.urandom(16).hex()
    k2 = os.urandom(32)
    policy = value["policy"]
    policy.update(
        escrow=world.escrow,
        sender=sender,
        receivers=[{"name": n, "encryption_key": b64(k)} for n, k in receivers.items()],
    )
    policy["attributes"].update(attributes)
    value.update(
        consignment_id=cid,
        policy_digest=b64(
            hashlib.sha256(b"consignment/v1 policy\x00" + canonical(policy)).digest()
        ),
        escrow_key=b64(k2),
        consignment_digest=hashlib.sha256(cid.encode()).hexdigest(),
        sealed_at=world.setup.clock.t,
    )
    valid("deposit.schema.json", value)
    return cid, k2, value


def sealed(world: World, escrow_key: X25519PublicKey, cid: str, plaintext: bytes) -> str:
    info = b"consignment/v1 deposit\x00" + bytes.fromhex(cid)
    return b64(SUITE.encrypt(plaintext, escrow_key, info=info))


def code(reply: dict[str, Any]) -> tuple[str, str | None]:
    assert reply["type"] == "error", reply["body"]
    return reply["body"]["code"], reply["body"]["detail"]


async def test_an_agent_built_from_the_documents(
    tmp_path: Path, amqp_factory: TransportFactory
) -> None:
    setup = await make_escrow(tmp_path / "escrow")
    transport = await amqp_factory()
    connection = await aio_pika.connect(amqp_factory.amqp_url)
    async with (
        connection,
        await setup.open_service() as service,
        running_worker(service, transport),
    ):
        channel = await connection.channel()
        world = World(setup, transport.config.prefix, channel)
        agents = {n: DocAgent(world, n) for n in ("alice", "bob", "carol")}
        for agent in agents.values():
            amqp_factory.track_queue(
                await world.declare_inbox(agent.name, transport.config.delivery_limit)
            )
        alice, bob, carol = agents["alice"], agents["bob"], agents["carol"]

        # lookup: the escrow's own name first (that is how its certificate is learnt)
        escrow = await alice.ask("lookup", {"name": world.escrow})
        assert escrow["type"] == "lookup-reply"
        enc = x509.load_pem_x509_certificate(escrow["body"]["encryption_certificate"].encode())
        enc.verify_directly_issued_by(world.ca)
        escrow_key = enc.public_key()
        assert isinstance(escrow_key, X25519PublicKey)
        found = await alice.ask("lookup", {"name": "bob"})
        bob_cert = x509.load_pem_x509_certificate(found["body"]["encryption_certificate"].encode())
        bob_key = bob_cert.public_key()
        assert isinstance(bob_key, X25519PublicKey)
        assert code(await alice.ask("lookup", {"name": "zed"})) == ("unknown_user", None)

        # deposit, and its refusals
        cid, k2, value = deposit_json(world, {"bob": raw(bob_key)}, max_releases=1)
        loose = json.dumps(value, indent=2).encode()
        refused = await alice.ask(
            "deposit",
            {"consignment_id": cid, "sealed_deposit": sealed(world, escrow_key, cid, loose)},
        )
        assert code(refused) == ("malformed", "not_canonical")
        body = {
            "consignment_id": cid,
            "sealed_deposit": sealed(world, escrow_key, cid, canonical(value)),
        }
        assert code(await bob.ask("deposit", body)) == ("not_sender", None)
        receipt = await alice.ask("deposit", body)
        assert receipt["type"] == "deposit-receipt"
        assert receipt["body"]["policy_digest"] == value["policy_digest"]
        assert receipt["body"]["receivers"] == ["bob"]
        assert code(await alice.ask("deposit", body)) == ("already_deposited", None)
        for change, expected in (
            ({"escrow": "other"}, "wrong_escrow"),
            (
                {"attributes": dict(value["policy"]["attributes"], cosigners=["zed"])},
                "unknown_user",
            ),
            ({"receivers": [{"name": "zed", "encryption_key": b64(raw(bob_key))}]}, "unknown_user"),
            ({"receivers": [{"name": "bob", "encryption_key": b64(os.urandom(32))}]}, "wrong_key"),
        ):
            other, _, wrong = deposit_json(world, {"bob": raw(bob_key)})
            wrong["policy"].update(change)
            wrong["policy_digest"] = b64(
                hashlib.sha256(b"consignment/v1 policy\x00" + canonical(wrong["policy"])).digest()
            )
            reply = await alice.ask(
                "deposit",
                {
                    "consignment_id": other,
                    "sealed_deposit": sealed(world, escrow_key, other, canonical(wrong)),
                },
            )
            assert code(reply) == (expected, None), change

        # key-request: the release opens with bob's key, as docs/protocol.md says
        ask = {"consignment_id": cid, "consignment_digest": value["consignment_digest"]}
        assert code(await bob.ask("key-request", dict(ask, consignment_digest="0" * 64))) == (
            "digest_mismatch",
            None,
        )
        assert code(await carol.ask("key-request", ask)) == ("not_a_receiver", None)
        unknown = dict(ask, consignment_id=os.urandom(16).hex())
        assert code(await bob.ask("key-request", unknown)) == ("unknown_consignment", None)
        release = await bob.ask("key-request", ask)
        assert release["type"] == "key-release"
        digest = base64.b64decode(release["body"]["policy_digest"])
        info = b"consignment/v1 release\x00" + bytes.fromhex(cid) + digest
        part = base64.b64decode(release["body"]["sealed_key_part"])
        assert SUITE.decrypt(part, bob.decryption, info=info) == k2
        assert code(await bob.ask("key-request", ask)) == ("exhausted", None)

        # status and revoke
        status = await alice.ask("status", {"consignment_id": cid})
        assert status["type"] == "status-reply"
        assert status["body"]["receivers"][0]["releases"] == 1
        assert code(await bob.ask("status", {"consignment_id": cid})) == ("not_sender", None)
        assert code(await bob.ask("revoke", {"consignment_id": cid, "receivers": []})) == (
            "not_sender",
            None,
        )
        revoke = {"consignment_id": cid, "receivers": ["carol"]}
        assert code(await alice.ask("revoke", revoke)) == ("not_a_receiver", None)
        revoked = await alice.ask("revoke", {"consignment_id": cid, "receivers": []})
        assert revoked["body"]["revoked"] == ["bob"]
        assert code(await bob.ask("key-request", ask)) == ("revoked", None)

        # a receipt before release (bob's own attribute) and a co-signer (carol),
        # signed as docs/protocol.md "Receipts and co-signing" says
        other, _, control = deposit_json(world, {"bob": raw(bob_key)}, cosigners=["carol"])
        own = dict.fromkeys(("ask_within_seconds", "max_releases", "not_after", "not_before"))
        control["policy"]["receivers"][0]["attributes"] = dict(own, receipt_required=True)
        control["policy_digest"] = b64(
            hashlib.sha256(b"consignment/v1 policy\x00" + canonical(control["policy"])).digest()
        )
        valid("deposit.schema.json", control)
        body = {
            "consignment_id": other,
            "sealed_deposit": sealed(world, escrow_key, other, canonical(control)),
        }
        assert (await alice.ask("deposit", body))["type"] == "deposit-receipt"
        ask = {"consignment_id": other, "consignment_digest": control["consignment_digest"]}
        assert code(await bob.ask("key-request", ask)) == ("receipt_required", None)

        def statement(kind: str, by: DocAgent, **change: Any) -> dict[str, Any]:
            said = {
                "kind": kind,
                "consignment_id": other,
                "consignment_digest": control["consignment_digest"],
                "policy_digest": control["policy_digest"],
                "signer": by.name,
                "signed_at": setup.clock.t,
            } | change
            context = f"consignment/v1 {kind} signature".encode() + b"\x00"
            signature = by.key.sign(context + canonical(said))
            return {"consignment_id": other, "statement": said, "signature": b64(signature)}

        wrong_context = statement("receipt", bob)
        wrong_context["signature"] = b64(
            bob.key.sign(CONTEXT + canonical(wrong_context["statement"]))
        )
        assert code(await bob.ask("receipt", wrong_context)) == ("invalid_signature", None)
        forged = statement("receipt", bob, policy_digest=b64(bytes(32)))
        assert code(await bob.ask("receipt", forged)) == ("subject_mismatch", "policy")
        receipted = await bob.ask("receipt", statement("receipt", bob))
        assert receipted["type"] == "receipt-reply"
        assert code(await bob.ask("key-request", ask)) == ("cosignatures_pending", None)
        terms = await carol.ask("agreement", {"consignment_id": other})
        assert terms["type"] == "agreement-reply"
        digest = hashlib.sha256(b"consignment/v1 policy\x00" + canonical(terms["body"]["policy"]))
        assert b64(digest.digest()) == terms["body"]["policy_digest"] == control["policy_digest"]
        assert code(await bob.ask("cosign", statement("agreement", bob))) == (
            "not_a_cosigner",
            None,
        )
        cosigned = await carol.ask("cosign", statement("agreement", carol))
        assert cosigned["type"] == "cosign-reply"
        assert cosigned["body"]["cosigners"][0]["name"] == "carol"
        assert (await bob.ask("key-request", ask))["type"] == "key-release"

        # refusals before any decision
        t = setup.clock.t
        lookup = {"name": "bob"}
        for change, expected in (
            ({"issued_at": t - 3600, "expires_at": t - 3000}, ("stale", "expired")),
            ({"issued_at": t + 3600, "expires_at": t + 3700}, ("stale", "from_future")),
            ({"expires_at": t + 3600}, ("stale", "lifetime_too_long")),
            ({"audience": "other"}, ("unauthenticated", "wrong_audience")),
            ({"reply_to": "carol"}, ("unauthenticated", "reply_to")),
            ({"type": "frobnicate"}, ("unknown_type", None)),
        ):
            # reply_to someone else: refused, answered to the signer's own inbox
            reply = await alice.ask("lookup", lookup, **change)
            assert code(reply) == expected, change
        bad_name = {"name": "Not A Name"}
        assert list(schema("lookup.v1.schema.json").iter_errors(bad_name))  # the schema says so
        reply = await alice.ask("lookup", bad_name, checked=False)
        assert code(reply) == ("malformed", None)  # and so does the escrow
        envelope = alice.envelope("lookup", lookup)
        forged = alice.wire(envelope, key=Ed25519PrivateKey.generate())
        reply = await alice.ask_raw(forged, envelope["request_id"], "lookup")
        assert code(reply) == ("unauthenticated", "bad_signature")
        # a signer the escrow never issued: answered to nobody (not to reply_to)
        unknown = alice.envelope("lookup", lookup, signer="ab" * 32)
        await alice.send(alice.wire(unknown), unknown["request_id"], "lookup")
        first = alice.envelope("lookup", lookup)
        assert (await alice.ask_raw(alice.wire(first), first["request_id"], "lookup"))["type"] == (
            "lookup-reply"
        )
        # (answered after the unknown signer's request: that one got nothing)
        assert not [
            e for e in alice.pending if e["body"].get("in_reply_to") == unknown["request_id"]
        ]
        again = dict(first, nonce=b64(os.urandom(16)))
        reply = await alice.ask_raw(alice.wire(again), again["request_id"], "lookup")
        assert code(reply) == ("replayed", None)

        # a malformed envelope: dead-lettered, never answered
        envelope = alice.envelope("lookup", lookup)
        pretty = json.dumps(json.loads(alice.wire(envelope)), indent=1).encode()
        await alice.send(pretty, envelope["request_id"], "lookup")
        dead_letters = await channel.get_queue(f"{world.prefix}.dead-letters")
        dead = None
        for _ in range(100):
            dead = await dead_letters.get(no_ack=True, fail=False)
            if dead is not None:
                break
            await asyncio.sleep(0.05)
        assert dead is not None
        assert dead.body == pretty
        assert (dead.headers or {}).get("x-first-death-reason") == "rejected"
        assert await world.queue(alice.inbox).get(no_ack=True, fail=False) is None


def test_this_module_uses_none_of_our_message_code() -> None:
    import ast

    tree = ast.parse(Path(__file__).read_text())
    nodes = list(ast.walk(tree))
    imported = {n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in imported if m.split(".")[0] in ("broker", "client", "escrow_worker")}
    assert ours == set()

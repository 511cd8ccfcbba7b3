"""The agent commands through the real `consign` entry point, in subprocesses,
against a real escrow worker process on RabbitMQ: exit code, stdout and stderr
of seal, send, inbox, open, revoke, status, events and demo, text and --json."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from yarl import URL

from broker.console import PROGRESS_THRESHOLD, progress
from tests.cli_helpers import (
    CONSIGN,
    Env,
    Result,
    assert_error,
    delete_topology,
    wait_until_serving,
)

ESCROW_PW = "operator passphrase"
PASSWORDS = {"alice": "alice pw", "bob": "bob pw", "carol": "carol pw"}
AGENT_COMMANDS = [
    "seal", "send", "inbox", "open", "revoke", "status", "events", "demo", "receipts", "cosign",
    "history", "gc",
]  # fmt: skip


class Agents(Env):
    def as_(self, name: str, *args: str, **extra: str) -> Result:
        who = {
            "CONSIGN_HOME": str(self.root / f"{name}-home"),
            "CONSIGN_IDENTITY_PASSPHRASE": PASSWORDS[name],
        }
        return self.run(*args, **(who | extra))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Agents]:
    """An escrow "acme" on RabbitMQ (its own queue prefix), `consign escrow
    worker` in a process of its own, and alice, bob and carol with their
    identities."""
    root = tmp_path_factory.mktemp("agents-cli")
    prefix = f"test-cli-{uuid.uuid4().hex[:10]}"
    agents = Agents(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(root / "escrow"),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PW,
            "CONSIGN_AMQP_URL": amqp_url,
            "CONSIGN_QUEUE_PREFIX": prefix,
        },
    )
    assert agents.run("escrow", "init", "--name", "acme").code == 0
    for name, password in PASSWORDS.items():
        registered = agents.run(
            "escrow",
            "register",
            name,
            "--out",
            f"{name}.identity",
            CONSIGN_IDENTITY_PASSPHRASE=password,
        )
        assert registered.code == 0, registered
        imported = agents.as_(name, "id", "import", f"{name}.identity")
        assert imported.code == 0, imported
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    worker_env.update(agents.vars)
    # Nothing waits for the worker to be ready: an agent that finds no escrow
    # queue yet publishes again until a worker has declared it.
    with (root / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [CONSIGN, "escrow", "worker"], cwd=root, env=worker_env, stderr=log
        )
    try:
        wait_until_serving(root / "worker.log", worker)  # else stderr may say "waiting for escrow"
        yield agents
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0  # a clean stop on SIGTERM
        asyncio.run(delete_topology(amqp_url, prefix))


def consignment_id(result: Result) -> str:
    assert result.code == 0, result
    (line,) = [x for x in result.out.splitlines() if x.startswith("consignment: ")]
    return line.removeprefix("consignment: ")


@pytest.mark.parametrize("command", AGENT_COMMANDS)
def test_help_explains_every_agent_command(command: str) -> None:
    proc = subprocess.run([CONSIGN, command, "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"Usage: consign {command} ")
    assert "--json" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.rabbitmq
def test_seal_send_inbox_open_revoke_status_events(env: Agents) -> None:
    # Other tests of the module's world may have sent bob consignments already (in
    # any order): what this one sends is what is new in his inbox.
    earlier = json.loads(env.as_("bob", "inbox", "--json").out)
    seen = {n["consignment_id"] for n in earlier["notifications"]}
    (env.root / "report.txt").write_text("quarterly numbers\n")
    sealed = env.as_(
        "alice", "seal", "report.txt", "--to", "bob", "--to", "carol", "-o", "report.consignment"
    )
    cid = consignment_id(sealed)
    assert "receivers: bob, carol" in sealed.out
    assert "mode: split" in sealed.out
    assert sealed.err.startswith("OK sealed and deposited for bob, carol")

    sent = env.as_("alice", "send", cid, "--json")
    assert sent.code == 0, sent
    assert json.loads(sent.out) == {
        "consignment_id": cid,
        "receivers": ["bob", "carol"],
        "chunks": 1,
        "size": (env.root / "report.consignment").stat().st_size,
    }
    assert sent.err.startswith("OK sent to the inbox of bob, carol")

    inbox = env.as_("bob", "inbox", "--json")
    assert inbox.code == 0, inbox
    data = json.loads(inbox.out)
    new = [n for n in data["notifications"] if n["consignment_id"] not in seen]
    assert [n["consignment_id"] for n in new] == [cid]
    received = [(r["consignment_id"], r["state"]) for r in data["received"]]
    assert [r for r in received if r[0] not in seen] == [(cid, "complete")]
    assert data["refused"] == earlier["refused"]
    (notification,) = new
    for key in ("deposited_at", "received_at"):  # the same ISO 8601 as status and seal
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", notification[key]), notification
    text = env.as_("bob", "inbox")  # kept from before: listed again
    assert f"notified  {cid}  from alice" in text.out
    assert f"complete  {cid}  from alice" in text.out

    opened = env.as_("bob", "open", cid, "-o", "bob-out")
    assert opened.code == 0, opened
    assert opened.out.strip() == "bob-out/report.txt  18"
    assert opened.err.strip() == "OK opened 1 file(s) from alice into bob-out"
    assert (env.root / "bob-out" / "report.txt").read_text() == "quarterly numbers\n"

    mallory = env.as_("alice", "revoke", cid, "--receiver", "mallory")
    assert_error(mallory, "(not_a_receiver)", "hint: name only receivers the consignment")
    assert "not addressed to you" not in mallory.err
    revoked = env.as_("alice", "revoke", cid, "--receiver", "carol")
    assert (revoked.code, revoked.out) == (0, f"consignment: {cid}\nrevoked: carol\n")
    assert revoked.err == "OK revoked for carol\n"
    again = env.as_("alice", "revoke", cid, "--receiver", "carol", "--json")
    assert again.code == 0, again
    assert json.loads(again.out) == {
        "consignment_id": cid,
        "revoked": ["carol"],
        "already_revoked": ["carol"],
        "releases": {"carol": 0},
    }
    assert again.err == "OK carol already revoked before, nothing changed\n"
    after_release = env.as_("alice", "revoke", cid, "--receiver", "bob")
    assert after_release.code == 0, after_release
    assert after_release.err.splitlines() == [
        "OK revoked for bob",
        "note: bob already received the key part (released once); "
        "revoking only stops further releases",
    ]
    env.as_("carol", "inbox")
    denied = env.as_("carol", "open", cid, "-o", "carol-out")
    assert_error(denied, "refused the key-request", "(revoked)", "hint: the sender revoked")
    assert not (env.root / "carol-out").exists()

    status = env.as_("alice", "status", cid, "--json")
    assert status.code == 0, status
    receivers = {r["name"]: r for r in json.loads(status.out)["receivers"]}
    assert receivers["bob"]["releases"] == 1
    assert receivers["carol"]["releases"] == 0
    assert receivers["carol"]["revoked_at"] is not None
    assert receivers["carol"]["last_denied"]

    events = env.as_("alice", "events", cid, "--json")
    assert events.code == 0, events
    kinds = [(e["kind"], e["receiver"]) for e in json.loads(events.out)]
    for event in json.loads(events.out):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["at"]), event
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["received_at"]), event
    for expected in [
        ("deposited", None),
        ("notified", "bob"),
        ("notified", "carol"),
        ("released", "bob"),
        ("revoked", "carol"),
        ("denied", "carol"),
        ("revoked", "bob"),
    ]:
        assert expected in kinds
    text_events = env.as_("alice", "events", cid)
    assert f"{cid}  denied  receiver=carol  reason=" in text_events.out


@pytest.mark.rabbitmq
def test_history_of_a_consignment(env: Agents) -> None:
    """The escrow's log about a consignment, signed: every step for the sender,
    its own for a receiver, the signed replies kept as proof."""
    (env.root / "minutes.txt").write_text("the minutes\n")
    sealed = env.as_("alice", "seal", "minutes.txt", "--to", "bob", "--to", "carol", "-o", "m.c")
    cid = consignment_id(sealed)
    assert env.as_("alice", "send", cid).code == 0
    env.as_("bob", "inbox")
    assert env.as_("bob", "open", cid, "-o", "bob-minutes").code == 0
    history = env.as_("alice", "history", cid, "--json", "--out", "proof.json")
    assert history.code == 0, history
    steps = [
        (e["data"]["signer"], e["data"]["type"], e["data"]["decision"])
        for e in json.loads(history.out)["entries"]
        if e["kind"] == "request"
    ]
    assert steps == [("alice", "deposit", "ok"), ("bob", "key-request", "ok")]
    assert json.loads((env.root / "proof.json").read_text())["signed_replies"]
    bobs = env.as_("bob", "history", cid)
    assert bobs.code == 0, bobs
    assert bobs.out.startswith("SEQ\tAT\tKIND\tWHAT\n")
    assert "bob key-request: ok" in bobs.out
    assert "to carol" not in bobs.out


@pytest.mark.rabbitmq
def test_send_for_another_channel_and_escrowed_mode(env: Agents) -> None:
    (env.root / "plan.txt").write_text("the plan\n")
    sealed = env.as_(
        "alice",
        "seal",
        "plan.txt",
        "--to",
        "bob",
        "--mode",
        "escrowed",
        "--max-releases",
        "1",
        "--ask-within",
        "7d",
        "-o",
        "plan.consignment",
        "--json",
    )
    assert sealed.code == 0, sealed
    info = json.loads(sealed.out)
    assert (info["mode"], info["receivers"]) == ("escrowed", ["bob"])
    assert info["receipt"]["sender"] == "alice"
    over_broker = env.as_("alice", "send", info["consignment_id"])
    assert over_broker.out == f"consignment: {info['consignment_id']}\nreceivers: bob\n" + (
        f"chunks: 1\nsize: {info['size']}\n"
    )
    copy = env.as_("alice", "send", info["consignment_id"], "-o", "mail/plan.consignment")
    assert copy.code == 0, copy
    assert copy.out == f"consignment: {info['consignment_id']}\nfile: mail/plan.consignment\n"
    assert (env.root / "mail" / "plan.consignment").read_bytes() == (
        env.root / "plan.consignment"
    ).read_bytes()
    opened = env.as_("bob", "open", "mail/plan.consignment", "-o", "bob-plan", "--json")
    assert opened.code == 0, opened
    assert json.loads(opened.out)["files"] == [{"name": "plan.txt", "size": 9, "mode": 0o644}]


@pytest.mark.rabbitmq
def test_errors_say_what_and_change_nothing(env: Agents) -> None:
    (env.root / "x.txt").write_text("x")
    (env.root / "taken.consignment").write_bytes(b"keep me")
    taken = env.as_("alice", "seal", "x.txt", "--to", "bob", "-o", "taken.consignment")
    assert_error(taken, "already exists", "--force")
    assert (env.root / "taken.consignment").read_bytes() == b"keep me"

    unknown = env.as_("alice", "seal", "x.txt", "--to", "mallory", "-o", "m.consignment")
    assert_error(unknown, "(unknown_user)")
    assert not (env.root / "m.consignment").exists()

    missing = env.as_("bob", "open", "0" * 32, "-o", "nothing")
    assert_error(missing, "has not arrived", "consign inbox")
    assert not (env.root / "nothing").exists()

    no_broker = env.as_("alice", "status", "0" * 32, CONSIGN_AMQP_URL="")
    assert_error(no_broker, "no broker", "CONSIGN_AMQP_URL")

    wrong = env.as_("alice", "inbox", CONSIGN_IDENTITY_PASSPHRASE="not it")
    assert_error(wrong, "passphrase")

    not_yours = env.as_("bob", "status", "0" * 32)
    assert_error(not_yours, "(unknown_consignment)")

    later = env.as_(
        "alice", "seal", "x.txt", "--to", "bob", "--not-before", "2090-01-01", "-o", "l.consignment"
    )
    too_soon = env.as_("bob", "open", "l.consignment", "-o", "l-out")
    assert_error(too_soon, "released from 2090-01-01T00:00:00Z on; ask again in ", "(not_yet)")
    assert "Unix time" not in too_soon.err
    assert consignment_id(later)

    nowhere = env.as_("alice", "seal", "x.txt", "--to", "bob", "-o", "no/such/dir/x.consignment")
    assert_error(
        nowhere,
        f"cannot write '{env.root}/no/such/dir/x.consignment'",
        f"hint: the directory '{env.root}/no/such/dir' does not exist; create it or choose",
    )

    bad_name = env.as_("alice", "seal", "x.txt", "--to", "Bad Name", "-o", "b.consignment")
    assert_error(bad_name, "'Bad Name' is not a user name", "consign escrow users")
    assert not (env.root / "b.consignment").exists()


@pytest.mark.rabbitmq
def test_an_unreachable_broker_is_said_in_words(env: Agents, amqp_url: str) -> None:
    refused = env.as_("alice", "status", "0" * 32, "--amqp-url", "amqp://u:pw@127.0.0.1:5999/")
    assert_error(
        refused,
        "error: cannot connect to RabbitMQ at 127.0.0.1:5999: connection refused",
        "hint: is RabbitMQ running there",
    )
    assert len(refused.err.splitlines()) == 2  # no library log line before ours
    assert "u:pw" not in refused.err
    novhost = str(URL(amqp_url).with_path("/novhost"))
    missing = env.as_("alice", "status", "0" * 32, "--amqp-url", novhost)
    assert_error(
        missing,
        "refused the vhost 'novhost' (missing, or no permission for this user)",
        "hint: check the vhost",
    )
    assert len(missing.err.splitlines()) == 2
    assert "0x" not in missing.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("seal", "x.txt", "-o", "o.consignment"), "Missing option '--to'"),
        (("seal", "x.txt", "--to", "bob"), "Missing option '-o'"),
        (("seal", "x.txt", "--to", "b", "-o", "o", "--mode", "both"), "Invalid value for '--mode'"),
        (("seal", "x.txt", "--to", "b", "-o", "o", "--not-before", "soon"), "neither ISO 8601"),
        (("seal", "x.txt", "--to", "b", "-o", "o", "--ask-within", "1w"), "not a duration"),
        (("seal", "x.txt", "--to", "b", "-o", "o", "--max-releases", "0"), "--max-releases"),
        (
            (
                "seal",
                "x.txt",
                "--to",
                "b",
                "-o",
                "o",
                "--not-before",
                "2030-01-02",
                "--not-after",
                "2030-01-01",
            ),
            "--not-after (2030-01-01T00:00:00Z) must be later than --not-before "
            "(2030-01-02T00:00:00Z)",
        ),
        (
            (
                "seal",
                "x.txt",
                "--to",
                "b",
                "-o",
                "o",
                "--not-before",
                "2030-01-01",
                "--not-after",
                "2030-01-01",
            ),
            "must be later than --not-before",
        ),
        (("open", "x"), "Missing option '-o'"),
        (("revoke",), "Missing argument 'ID'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "x.txt").write_text("x")
    result = Env(tmp_path).run(*args)
    assert result.code == 2, result
    assert result.out == ""
    assert message in result.err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("status", "0000"), "the id that `consign seal` printed"),
        (("revoke", "0000"), "the id that `consign seal` printed"),
        (("revoke", "A" * 32), f"lowercase: {'a' * 32}"),
        (("status", "0" * 31 + "g"), "the id that `consign seal` printed"),
        (("events", "0" * 33), "the id that `consign seal` printed"),
    ],
)
def test_a_mistyped_id_is_an_error_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], hint: str
) -> None:
    # Checked before any identity, passphrase or broker is needed.
    result = Env(tmp_path).run(*args)
    assert_error(
        result, f"error: {args[1]!r} is not a consignment id (32 lowercase hex digits)", hint
    )


@pytest.mark.parametrize(
    ("variable", "value", "what"),
    [
        ("CONSIGN_MAX_MESSAGE_SIZE", "-5", "greater than or equal to 1024"),
        ("CONSIGN_DELIVERY_LIMIT", "abc", "a valid integer"),
    ],
)
def test_a_bad_broker_setting_names_the_variable(
    tmp_path: Path, variable: str, value: str, what: str
) -> None:
    result = Env(tmp_path).run("status", "0" * 32, **{variable: value})
    assert_error(result, f"error: {variable}: input should be", what, f"hint: fix {variable}")


@pytest.mark.parametrize("not_after", ["2020-01-01", "1577836800"])
def test_seal_refuses_a_release_window_already_over(tmp_path: Path, not_after: str) -> None:
    (tmp_path / "x.txt").write_text("x")
    # Refused before any identity or broker is needed, so nothing is deposited.
    result = Env(tmp_path).run(
        "seal", "x.txt", "--to", "bob", "-o", "o.consignment", "--not-after", not_after
    )
    assert_error(
        result,
        "error: the release window is already over (not after 2020-01-01T00:00:00Z)",
        "hint: give a later --not-after",
    )
    assert not (tmp_path / "o.consignment").exists()


def demo_steps(result: Result) -> list[str]:
    assert result.code == 0, result
    return [line.split()[0] for line in result.out.splitlines()]


STORY = ["register", "worker", "seal", "deposit", "deliver", "inbox", "request", "held",
         "cosign", "release", "open", "receipt", "revoke", "denied", "events",
         "status"]  # fmt: skip


def test_demo_runs_without_a_server(tmp_path: Path) -> None:
    result = Env(tmp_path).run("demo")
    assert demo_steps(result) == STORY
    assert "the in-process transport" in result.out
    assert "bob opens contract.txt: 'Alice sells Bob one consignment engine" in result.out
    assert "denied    carol asks for the key part: the escrow refuses (revoked)" in result.out
    assert "held      the escrow holds the key part back (cosignatures_pending)" in result.out
    proofs = (
        "receipt   alice holds, each verified against her CA: receipt of bob, agreement of dave"
    )
    assert proofs in result.out
    assert result.err.strip().endswith(
        "OK the demo ran end to end; see README.md for the same over RabbitMQ"
    )
    as_json = Env(tmp_path).run("demo", "--json")
    assert as_json.code == 0, as_json
    data = json.loads(as_json.out)
    assert [s["step"] for s in data["steps"]] == STORY
    assert data["denied"] == "revoked"
    assert data["opened"].startswith("Alice sells Bob")
    assert (data["held"], data["cosigned_by"], data["receipts"]) == (
        "cosignatures_pending",
        ["dave"],
        ["bob"],
    )


@pytest.mark.rabbitmq
def test_demo_runs_over_rabbitmq_apart_from_a_real_escrow(tmp_path: Path, amqp_url: str) -> None:
    """A real deployment's prefix in the environment (as after the walkthrough):
    the demo uses and then deletes queues of its own, and a request waiting in
    the real escrow's queue stays there."""
    prefix = f"test-demo-{uuid.uuid4().hex[:10]}"
    real_queue = f"{prefix}.escrow.requests"

    async def waiting_request(publish: bool) -> int:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                real_queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            if publish:
                await channel.default_exchange.publish(
                    aio_pika.Message(b"a real request"), routing_key=real_queue
                )
            return queue.declaration_result.message_count or 0

    async def exists(queue: str) -> bool:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            try:
                await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return False
            return True

    try:
        asyncio.run(waiting_request(publish=True))
        result = Env(tmp_path).run("demo", "--amqp-url", amqp_url, CONSIGN_QUEUE_PREFIX=prefix)
        assert demo_steps(result) == STORY
        assert "(revoked)" in result.out
        assert "receipt of bob, agreement of dave" in result.out
        used = re.search(r"RabbitMQ \(queue prefix (consign-demo-[0-9a-f]{8})\)", result.out)
        assert used is not None, result.out
        assert not asyncio.run(exists(f"{used.group(1)}.escrow.requests"))
        assert not asyncio.run(exists(f"{used.group(1)}.inbox.bob"))
        assert asyncio.run(waiting_request(publish=False)) == 1
    finally:
        asyncio.run(delete_topology(amqp_url, prefix))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_large_work_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress("opening", PROGRESS_THRESHOLD - 1) as step:
        assert step is None  # small: no bar
    with progress("opening", PROGRESS_THRESHOLD) as step:
        assert step is not None
        step(PROGRESS_THRESHOLD // 2, PROGRESS_THRESHOLD)
        step(PROGRESS_THRESHOLD, PROGRESS_THRESHOLD)
    assert "opening" in terminal.getvalue()
    assert "100%" in terminal.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no bar
    with progress("opening", PROGRESS_THRESHOLD * 4) as step:
        assert step is None


@pytest.mark.parametrize("command", ["seal", "open", "send"])
def test_output_and_overwrite_options_have_the_same_names_everywhere(
    tmp_path: Path, command: str
) -> None:
    shown = Env(tmp_path).run(command, "--help")
    assert shown.code == 0, shown
    assert "-o, --output" in shown.out
    if command != "send":
        assert "--force" in shown.out
        assert "--overwrite" in shown.out

"""The sender's control through the real `consign` entry point, in subprocesses,
against a real escrow worker process on RabbitMQ: `seal` with `--receipt`,
`--cosign` and `--for NAME ...`, `open` sending the receipt, `cosign` showing
what is signed before signing, `receipts` verifying the proofs, `status` per
receiver (text and --json); and the flags' usage errors, before anything is
sealed or deposited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import CONSIGN, Env, Result, assert_error, delete_topology

ESCROW_PW = "operator passphrase"
PEOPLE = ("alice", "bob", "carol", "dave")


class Parties(Env):
    def as_(self, name: str, *args: str, **extra: str) -> Result:
        who = {
            "CONSIGN_HOME": str(self.root / f"{name}-home"),
            "CONSIGN_IDENTITY_PASSPHRASE": f"{name} passphrase",
        }
        return self.run(*args, **(who | extra))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Parties]:
    root = tmp_path_factory.mktemp("control-cli")
    prefix = f"test-control-{uuid.uuid4().hex[:10]}"
    parties = Parties(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(root / "escrow"),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PW,
            "CONSIGN_AMQP_URL": amqp_url,
            "CONSIGN_QUEUE_PREFIX": prefix,
        },
    )
    assert parties.run("escrow", "init", "--name", "acme").code == 0
    for name in PEOPLE:
        pw = {"CONSIGN_IDENTITY_PASSPHRASE": f"{name} passphrase"}
        assert parties.run("escrow", "register", name, "--out", f"{name}.identity", **pw).code == 0
        assert parties.as_(name, "id", "import", f"{name}.identity").code == 0
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    worker_env.update(parties.vars)
    with (root / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [CONSIGN, "escrow", "worker"], cwd=root, env=worker_env, stderr=log
        )
    try:
        yield parties
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
        asyncio.run(delete_topology(amqp_url, prefix, PEOPLE))


@pytest.mark.rabbitmq
def test_receipt_cosign_and_a_receivers_own_window(env: Parties) -> None:
    (env.root / "contract.txt").write_text("the contract\n")
    sealed = env.as_(
        "alice", "seal", "contract.txt", "--to", "bob", "--to", "carol", "-o", "c.consignment",
        "--not-after", "2099-01-01T00:00Z", "--cosign", "dave",
        "--for", "bob", "--receipt", "--not-after", "2098-12-31T00:00Z",
    )  # fmt: skip
    assert sealed.code == 0, sealed
    (cid,) = [x.split(": ")[1] for x in sealed.out.splitlines() if x.startswith("consignment: ")]
    assert env.as_("alice", "send", cid).code == 0

    status = env.as_("alice", "status", cid, "--json")
    assert status.code == 0, status
    data = json.loads(status.out)
    receivers = {r["name"]: r for r in data["receivers"]}
    assert receivers["bob"]["receipt_required"] is True
    assert receivers["bob"]["closes_at"] == "2098-12-31T00:00:00Z"  # his own
    assert receivers["carol"]["receipt_required"] is False
    assert receivers["carol"]["closes_at"] == "2099-01-01T00:00:00Z"
    assert data["cosigners"] == [{"name": "dave", "signed_at": None}]

    held = env.as_("bob", "open", cid, "-o", "bob-out")
    assert_error(held, "(cosignatures_pending)", "still missing: dave", "hint: every co-signer")
    assert not (env.root / "bob-out").exists()

    # Not on a terminal and no --yes: shown on stdout, not signed.
    shown = env.as_("dave", "cosign", cid)
    assert shown.code == 1, shown
    assert shown.out.startswith("You are asked to co-sign:\nconsignment: " + cid)
    assert "sender: alice" in shown.out
    own = "receiver: bob (own conditions: not_after 2098-12-31T00:00:00Z, receipt)"
    assert own in shown.out
    assert "conditions: not_after 2099-01-01T00:00:00Z, cosigners dave" in shown.out
    assert "co-signer: dave (not yet signed)" in shown.out
    assert "error: not signed: nobody confirmed it" in shown.err
    assert "hint: read what is shown, then run again with --yes" in shown.err
    signed = env.as_("dave", "cosign", cid, "--yes", "--json")
    assert signed.code == 0, signed
    result = json.loads(signed.out)
    assert result["agreement"]["consignment_id"] == cid
    assert [c["name"] for c in result["signed"]["cosigners"] if c["signed_at"]] == ["dave"]
    assert "every co-signer has signed" in signed.err
    again = env.as_("dave", "cosign", cid, "--yes")
    assert again.code == 0
    assert "dave signed it already" in again.err

    opened = env.as_("bob", "open", cid, "-o", "bob-out")
    assert opened.code == 0, opened
    assert (env.root / "bob-out" / "contract.txt").read_text() == "the contract\n"
    assert env.as_("carol", "open", cid, "-o", "carol-out").code == 0

    receipts = env.as_("alice", "receipts", cid, "--json")
    assert receipts.code == 0, receipts
    (proof,) = json.loads(receipts.out)
    assert (proof["kind"], proof["signer"], proof["verified"]) == ("receipt", "bob", True)
    assert receipts.err.strip() == "OK 1 receipt(s), each verified"
    both = env.as_("alice", "receipts", cid, "--cosignatures")
    assert both.code == 0, both
    lines = both.out.splitlines()
    assert [line.split()[:2] for line in lines] == [["receipt", "bob"], ["agreement", "dave"]]
    assert all(line.endswith("verified") for line in lines)

    text = env.as_("alice", "status", cid)
    assert text.code == 0, text
    (bob_line,) = [x for x in text.out.splitlines() if x.startswith("receiver bob:")]
    assert "released 1x" in bob_line
    assert "receipt 20" in bob_line
    assert "co-signatures 1/1" in bob_line
    assert "denied cosignatures_pending at 20" in bob_line
    assert "window closes 2098-12-31T00:00:00Z" in bob_line
    (carol_line,) = [x for x in text.out.splitlines() if x.startswith("receiver carol:")]
    assert "receipt not asked" in carol_line


@pytest.mark.rabbitmq
def test_receipts_of_a_consignment_nobody_acknowledged(env: Parties) -> None:
    (env.root / "plain.txt").write_text("plain\n")
    sealed = env.as_("alice", "seal", "plain.txt", "--to", "carol", "-o", "p.consignment", "--json")
    cid = json.loads(sealed.out)["consignment_id"]
    listed = env.as_("alice", "receipts", cid)
    assert (listed.code, listed.out) == (0, "")
    assert listed.err.strip() == "OK 0 receipt(s), each verified"
    stranger = env.as_("bob", "cosign", cid, "--yes")
    assert_error(stranger, "(not_a_cosigner)", "hint: the sender did not name you")


SEAL = ("seal", "x.txt", "--to", "bob", "--to", "carol", "-o", "o.consignment")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--for", "zed", "--receipt"), "--for zed: zed is not a receiver"),
        (("--for", "bob"), "--for bob gives no attribute flag after it"),
        (
            ("--for", "bob", "--max-releases", "1", "--max-releases", "2"),
            "gives --max-releases twice",
        ),
        (
            ("--not-before", "2090-01-01T00:00Z", "--for", "bob", "--not-after", "2089-01-01"),
            "--for bob: Value error, not_after must be later than not_before",
        ),
        (("--cosign", "dave,dave"), "--cosign names dave more than once"),
        (("--cosign", "Dave"), "names are lowercase: dave"),
        (("--for", "bob", "--max-releases", "0"), "0 is not in the range x>=1"),
        (("--for", "bob", "--not-after", "soon"), "neither ISO 8601"),
        (("--for",), "--for needs a receiver's name"),
    ],
)
def test_contradictory_or_bad_flags_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Refused before any identity, broker or file is touched: nothing sealed,
    nothing deposited."""
    (tmp_path / "x.txt").write_text("x")
    result = Env(tmp_path).run(*SEAL, *args)
    assert result.code == 2, result
    assert result.out == ""
    assert message in result.err
    assert not (tmp_path / "o.consignment").exists()


def test_a_receivers_window_already_over_is_refused_before_sealing(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    result = Env(tmp_path).run(*SEAL, "--for", "carol", "--not-after", "2020-01-01")
    assert_error(result, "carol could ever open this consignment", "hint: give a later")
    assert not (tmp_path / "o.consignment").exists()

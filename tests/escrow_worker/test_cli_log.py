"""`consign escrow log ...`, `consign log verify` and `consign escrow invoice`
through the real entry point: data on stdout, `error:` and `hint:` on stderr,
exit 1 naming the first bad entry. On SQLite only, to keep the suite short: the
commands are thin wrappers, and what they call runs on both backends in
test_txlog, test_notary and test_history."""

from __future__ import annotations

import calendar
import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.canonical import canonical_json
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS
from tests.cli_helpers import Env, assert_error
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import EscrowSetup, make_escrow, seal_for


@pytest.fixture
async def used(escrow_location: Location, tmp_path: Path) -> tuple[EscrowSetup, Env, str]:
    """An escrow (clock: now) with two deposits from alice and one release to bob."""
    setup = await make_escrow(escrow_location, ("alice", "bob"), now=datetime.now(UTC))
    async with await setup.open_service() as service:
        direct = Direct(setup, service)
        _, first = seal_for(setup["alice"], [setup["bob"]])
        _, second = seal_for(setup["alice"], [setup["bob"]])
        await direct.deposit(first)
        await direct.deposit(second)
        assert (await direct.key("bob", first)).code is None
    env = Env(tmp_path, {"CONSIGN_ESCROW_PASSPHRASE": ESCROW_PASS.decode()})
    if escrow_location.database:
        env.vars["CONSIGN_ESCROW_DB"] = escrow_location.database
    else:
        env.vars["CONSIGN_ESCROW_DIR"] = str(escrow_location.directory)
    return setup, env, first.consignment_id


@pytest.mark.parametrize("escrow_location", ["sqlite"], indirect=True)
async def test_verify_show_export_and_offline_verify(
    used: tuple[EscrowSetup, Env, str], tmp_path: Path
) -> None:
    setup, env, cid = used
    verified = env.run("escrow", "log", "verify", "--json")
    assert verified.code == 0, verified.err
    report: Any = verified.json()
    assert report["escrow"] == "acme"
    assert report["entries"] > 10
    assert "OK the log of 'acme' is intact" in verified.err

    shown = env.run("escrow", "log", "show", "--consignment", cid, "--kind", "request", "--json")
    assert shown.code == 0, shown.err
    rows: Any = shown.json()
    assert [(r["data"]["type"], r["data"]["signer"]) for r in rows] == [
        ("deposit", "alice"),
        ("key-request", "bob"),
    ]
    text = env.run("escrow", "log", "show", "--party", "bob", "--since", "2000-01-01")
    assert text.code == 0
    assert text.out.splitlines()[0] == "SEQ\tAT\tKIND\tCONSIGNMENT\tWHAT"
    assert "bob key-request: ok" in text.out

    signed = env.run("escrow", "log", "head", "--sign", "--json")
    assert signed.code == 0, signed.err
    head: Any = signed.json()
    assert head["signed"]["size"] == head["size"] == report["entries"]

    archive = tmp_path / "notary.json"
    exported = env.run("escrow", "log", "export", "--from", "2", "--out", str(archive))
    assert exported.code == 0, exported.err
    assert "OK wrote entries 2.." in exported.err
    ca = tmp_path / "ca.pem"
    ca.write_bytes(
        setup["alice"].ca_certificate.public_bytes(Encoding.PEM)  # the escrow's CA
    )
    offline = env.run(
        "log",
        "verify",
        str(archive),
        "--ca",
        str(ca),
        "--json",
        unset=("CONSIGN_ESCROW_DB", "CONSIGN_ESCROW_DIR"),
    )
    assert offline.code == 0, offline.err
    assert offline.json()["first"] == 2  # type: ignore[index]

    value = json.loads(archive.read_bytes())
    del value["entries"][5]
    archive.write_text(json.dumps(value))
    broken = env.run("log", "verify", str(archive))
    assert_error(broken, "entry 7: expected entry 7, found entry 8")
    assert broken.err.startswith("error: entry 7: expected entry 7, found entry 8 in its place")

    # A row edited in the store: the operator's verify names it.
    rows = await setup.run(lambda tx: tx.fetchall("SELECT entry FROM log_entries WHERE seq = 9"))
    value = json.loads(bytes(rows[0][0]))
    value["at"] += 1

    async def edit(tx: Tx) -> None:
        await tx.execute("UPDATE log_entries SET entry = ? WHERE seq = 9", (canonical_json(value),))

    await setup.run(edit)
    result = env.run("escrow", "log", "verify")
    assert_error(result)
    assert result.err.startswith("error: entry 9: altered")


@pytest.mark.parametrize("escrow_location", ["sqlite"], indirect=True)
async def test_invoice_counts_the_log(used: tuple[EscrowSetup, Env, str], tmp_path: Path) -> None:
    setup, env, _ = used
    now = setup.clock.now
    period = now.strftime("%Y-%m")
    days_held = calendar.monthrange(now.year, now.month)[1] - now.day + 1
    prices = tmp_path / "prices.toml"
    prices.write_text('currency = "EUR"\n[prices]\ndeposit = "0.10"\nstorage_day = 0.01\n')
    result = env.run(
        "escrow", "invoice", "--period", period, "--prices", str(prices), "--format", "csv"
    )
    assert result.code == 0, result.err
    lines = list(csv.DictReader(io.StringIO(result.out)))
    assert [(r["account"], r["item"], r["count"], r["amount"]) for r in lines] == [
        ("alice", "deposit", "2", "0.20"),
        ("alice", "storage_day", str(2 * days_held), str(Decimal("0.01") * 2 * days_held)),
        ("bob", "release", "1", "0"),
    ]
    as_json = env.run("escrow", "invoice", "--period", period, "--prices", str(prices), "--json")
    assert as_json.json()["total"] == str(Decimal("0.20") + Decimal("0.01") * 2 * days_held)  # type: ignore[index]
    prices.write_text('[prices]\ndeposit = "-1"\n')
    refused = env.run("escrow", "invoice", "--period", period, "--prices", str(prices))
    assert_error(refused)
    assert "the price of 'deposit' is negative" in refused.err


@pytest.mark.parametrize("escrow_location", ["sqlite"], indirect=True)
async def test_batch_items_are_shown_and_an_edited_one_is_named(
    escrow_location: Location, tmp_path: Path
) -> None:
    setup = await make_escrow(escrow_location, ("alice", "bob"), now=datetime.now(UTC))
    _, deposit = seal_for(setup["alice"], [setup["bob"]])
    key = {
        "consignment_id": deposit.consignment_id,
        "consignment_digest": deposit.consignment_digest,
    }
    async with await setup.open_service() as service:
        direct = Direct(setup, service)
        await direct.deposit(deposit)
        items = [{"id": "b" * 32, "body": key}, {"id": "c" * 32, "body": {"consignment_id": "x"}}]
        answer = await direct.ask("bob", "batch", {"kind": "key-request", "items": items})
        assert answer.reply.type == "batch-reply"
    env = Env(tmp_path, {"CONSIGN_ESCROW_PASSPHRASE": ESCROW_PASS.decode()})
    env.vars["CONSIGN_ESCROW_DIR"] = str(escrow_location.directory)
    shown = env.run("escrow", "log", "show", "--party", "bob", "--kind", "request")
    assert shown.code == 0, shown.err
    assert f"bob key-request: ok [item {'b' * 32} of batch " in shown.out
    assert "bob key-request: malformed (" in shown.out

    rows = await setup.run(
        lambda tx: tx.fetchall("SELECT seq, entry FROM log_entries WHERE kind = 'request'")
    )
    seq, raw = next((s, bytes(e)) for s, e in rows if b'"batch":{' in bytes(e))
    value = json.loads(raw)
    value["data"]["decision"] = "revoked"

    async def edit(tx: Tx) -> None:
        await tx.execute(
            "UPDATE log_entries SET entry = ? WHERE seq = ?", (canonical_json(value), seq)
        )

    await setup.run(edit)
    result = env.run("escrow", "log", "verify")
    assert_error(result)
    assert result.err.startswith(f"error: entry {seq}: altered")

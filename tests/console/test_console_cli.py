"""`consign escrow operator` and `consign escrow console` refuse bad input (a
user that is none, a wrong passphrase, half a TLS pair, a bad price table)
with a clear error and change nothing."""

from __future__ import annotations

from pathlib import Path

from tests.broker.pki_helpers import ESCROW_PASS, snapshot
from tests.cli_helpers import Env, assert_error
from tests.escrow_worker.helpers import make_escrow


async def test_bad_operator_and_console_commands_change_nothing(tmp_path: Path) -> None:
    setup = await make_escrow(tmp_path / "escrow", ("alice", "olga"))
    env = Env(
        tmp_path,
        {
            "CONSIGN_ESCROW_DIR": str(setup.directory),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PASS.decode(),
        },
    )
    before = await setup.run(snapshot)
    assert_error(
        env.run("escrow", "operator", "nobody", CONSIGN_OPERATOR_PASSPHRASE="x"),
        "no registered, unrevoked user named 'nobody'",
    )
    # A failed --p12 issues nothing: the escrow passphrase is wrong.
    assert_error(
        env.run(
            "escrow",
            "operator",
            "olga",
            "--p12",
            str(tmp_path / "o.p12"),
            CONSIGN_OPERATOR_PASSPHRASE="x",
            CONSIGN_ESCROW_PASSPHRASE="wrong",
        )
    )
    assert not (tmp_path / "o.p12").exists()
    usage = env.run("escrow", "console", "--tls-cert", str(tmp_path / "c.pem"))
    assert usage.code == 2
    assert "give both --tls-cert and --tls-key" in usage.err
    # A price table the invoices page could not use stops the console before it serves.
    prices = tmp_path / "prices.toml"
    prices.write_text('currency = "EUR"\n[prices]\ndeposit = "-1"\n')
    assert_error(
        env.run("escrow", "console", "--prices", str(prices), "--port", "1"),
        "the price of 'deposit' is negative",
    )
    assert await setup.run(snapshot) == before

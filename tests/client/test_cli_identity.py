"""The real `consign` entry point, run in a subprocess: exit code, stdout, stderr
for every identity and escrow command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_helpers import CONSIGN, Env, assert_error

ESCROW_PW = "operator passphrase"
ALICE_PW = "alice passphrase"
BOB_PW = "bob passphrase"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """An escrow "acme" with alice registered by the operator (identity file)
    and bob registered from his own request (keys never left his home)."""
    root = tmp_path_factory.mktemp("cli")
    env = Env(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(root / "escrow"),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PW,
            "CONSIGN_HOME": str(root / "bob-home"),
        },
    )
    init = env.run("escrow", "init", "--name", "acme", "--json")
    assert init.code == 0, init
    register = env.run(
        "escrow", "register", "alice", "--group", "staff", CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW
    )
    assert register.code == 0, register
    create = env.run("id", "create", "bob", CONSIGN_IDENTITY_PASSPHRASE=BOB_PW)
    assert create.code == 0, create
    sign = env.run(
        "escrow", "sign-csr", "bob-home/bob.csr", "--group", "partners", "--out", "bob.pem"
    )
    assert sign.code == 0, sign
    imported = env.run("id", "import", "bob.pem", CONSIGN_IDENTITY_PASSPHRASE=BOB_PW)
    assert imported.code == 0, imported
    hank = env.run("id", "create", "hank", "--home", "hank-home", CONSIGN_IDENTITY_PASSPHRASE="h")
    assert hank.code == 0, hank
    (root / "hank.csr").write_bytes((root / "hank-home" / "hank.csr").read_bytes())
    return env


HELP = [
    (),
    ("escrow",),
    ("escrow", "init"),
    ("escrow", "register"),
    ("escrow", "sign-csr"),
    ("escrow", "revoke"),
    ("escrow", "users"),
    ("escrow", "certificates"),
    ("escrow", "crl"),
    ("escrow", "info"),
    ("escrow", "policy"),
    ("escrow", "policy", "show"),
    ("escrow", "policy", "mode"),
    ("escrow", "policy", "allow"),
    ("escrow", "policy", "remove"),
    ("escrow", "policy", "check"),
    ("id",),
    ("id", "create"),
    ("id", "import"),
    ("id", "show"),
]


@pytest.mark.parametrize("words", HELP, ids=[" ".join(w) or "consign" for w in HELP])
def test_every_command_has_help(tmp_path: Path, words: tuple[str, ...]) -> None:
    result = Env(tmp_path).run(*words, "--help")
    assert result.code == 0
    assert "Usage: consign" in result.out
    assert result.err == ""
    if words and words[-1] not in ("escrow", "id", "policy"):
        assert "--json" in result.out


def test_init_output_and_files(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(ESCROW_PW + "\n")
    env = Env(tmp_path)
    result = env.run("escrow", "init", "--escrow-dir", "e", "--passphrase-file", str(pw), "--json")
    assert result.code == 0, result
    data = result.json()
    assert isinstance(data, dict)
    assert data["name"] == "escrow"
    assert len(data["ca_fingerprint"]) == 64
    assert "OK escrow 'escrow' initialised" in result.err
    assert {p.name for p in (tmp_path / "e").iterdir()} >= {"ca.pem", "ca.key", "escrow.db"}
    # the passphrase from the file (newline dropped) unlocks the CA: users can be listed,
    # and a CRL signed with it
    crl = env.run("escrow", "crl", "--escrow-dir", "e", "--passphrase-file", str(pw))
    assert crl.code == 0, crl
    assert crl.out.startswith("-----BEGIN X509 CRL-----")
    again = env.run("escrow", "init", "--escrow-dir", "e", "--passphrase-file", str(pw))
    assert_error(again, "already holds an escrow")


def test_init_without_passphrase_is_refused(tmp_path: Path) -> None:
    result = Env(tmp_path).run("escrow", "init", "--escrow-dir", "e")
    assert_error(result, "no escrow passphrase", "CONSIGN_ESCROW_PASSPHRASE")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("escrow", "register"),
        ("escrow", "users", "--escrow-dir"),
        ("escrow", "init", "--days", "zero"),
        ("escrow", "policy", "mode", "sometimes"),
        ("id", "show", "--no-such-option"),
        ("escrow", "nope"),
    ],
    ids=["missing-name", "missing-value", "bad-int", "bad-choice", "bad-option", "bad-command"],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = Env(tmp_path, {"CONSIGN_ESCROW_DIR": str(tmp_path)}).run(*args)
    assert result.code == 2, result
    assert result.out == ""
    assert "Error:" in result.err


def test_escrow_dir_is_required(tmp_path: Path) -> None:
    result = Env(tmp_path).run("escrow", "users")
    assert result.code == 2
    assert "--escrow-dir" in result.err


def test_users_lists_everyone(world: Env) -> None:
    result = world.run("escrow", "users", "--json")
    assert result.code == 0, result
    users = {u["name"]: u for u in result.json()}  # type: ignore[attr-defined]
    assert users["acme"]["kind"] == "escrow"
    assert users["alice"]["groups"] == ["staff"]
    assert users["bob"]["groups"] == ["partners"]
    assert {c["role"] for c in users["bob"]["certificates"]} == {"signing", "encryption"}
    text = world.run("escrow", "users")
    assert text.out.splitlines()[0].split() == ["NAME", "KIND", "STATE", "GROUPS"]
    assert any(line.split()[:3] == ["alice", "user", "active"] for line in text.out.splitlines())


def test_show_operator_identity_file(world: Env) -> None:
    result = world.run(
        "id", "show", "--file", "alice.identity", "--json", CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW
    )
    assert result.code == 0, result
    data = result.json()
    assert isinstance(data, dict)
    assert data["name"] == "alice"
    assert data["state"] == "complete"
    assert len(data["signing"]["fingerprint"]) == 64
    assert "PRIVATE" not in result.out


def test_show_local_identity_after_import(world: Env) -> None:
    result = world.run("id", "show", CONSIGN_IDENTITY_PASSPHRASE=BOB_PW)
    assert result.code == 0, result
    assert result.out.splitlines()[:2] == ["name: bob", "state: complete"]
    users = world.run("escrow", "users", "--json").json()
    bob = next(u for u in users if u["name"] == "bob")  # type: ignore[attr-defined]
    signing = next(c for c in bob["certificates"] if c["role"] == "signing")
    assert signing["fingerprint"] in result.out


@pytest.mark.parametrize(
    ("args", "passphrase", "fragment"),
    [
        (
            ("id", "show", "--file", "alice.identity"),
            "wrong",
            "check the identity passphrase (CONSIGN_IDENTITY_PASSPHRASE",
        ),
        (("id", "show", "--file", "no-such-file"), ALICE_PW, "cannot read"),
        (("id", "show", "--file", "bob.pem"), ALICE_PW, "not a identity file"),
        (("id", "show", "nobody"), BOB_PW, "no identity 'nobody'"),
        (("id", "import", "bob-home/bob.csr"), BOB_PW, "not a certificate bundle"),
        (("id", "import", "bob.pem", "--ca-fingerprint", "00" * 32), BOB_PW, "fingerprint"),
        (("id", "import", "bob.pem"), BOB_PW, "already has its certificates"),
        (("id", "create", "bob"), BOB_PW, "already exists"),
        (("id", "create", "Not Valid"), BOB_PW, "invalid name"),
    ],
    ids=[
        "wrong-passphrase",
        "missing-file",
        "not-identity",
        "unknown-name",
        "csr-as-bundle",
        "ca-pin-mismatch",
        "import-twice",
        "create-twice",
        "bad-name",
    ],
)
def test_identity_refusals(
    world: Env, args: tuple[str, ...], passphrase: str, fragment: str
) -> None:
    home = Path(world.vars["CONSIGN_HOME"])
    before = {p.name: p.read_bytes() for p in home.iterdir()}
    result = world.run(*args, CONSIGN_IDENTITY_PASSPHRASE=passphrase)
    assert_error(result, fragment)
    assert {p.name: p.read_bytes() for p in home.iterdir()} == before


def test_damaged_identity_file(world: Env, tmp_path: Path) -> None:
    data = bytearray((world.root / "alice.identity").read_bytes())
    data[len(data) // 2] ^= 1
    damaged = tmp_path / "damaged.identity"
    damaged.write_bytes(bytes(data))
    result = world.run("id", "show", "--file", str(damaged), CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW)
    assert_error(result)
    assert "damaged" in result.err or "not a identity file" in result.err


def _users(world: Env) -> object:
    return world.run("escrow", "users", "--json").json()


@pytest.mark.parametrize(
    ("args", "extra", "fragment"),
    [
        (("escrow", "register", "alice"), {"CONSIGN_IDENTITY_PASSPHRASE": "x"}, "already"),
        (("escrow", "register", "acme"), {"CONSIGN_IDENTITY_PASSPHRASE": "x"}, "already"),
        (("escrow", "register", "zoe"), {}, "no identity file passphrase"),
        (
            ("escrow", "register", "zoe"),
            {"CONSIGN_IDENTITY_PASSPHRASE": "x", "CONSIGN_ESCROW_PASSPHRASE": "wrong"},
            "check the escrow passphrase (CONSIGN_ESCROW_PASSPHRASE",
        ),
        (("escrow", "sign-csr", "alice.identity"), {}, "certificate request refused"),
        (("escrow", "sign-csr", "bob-home/bob.csr"), {}, "already registered"),
        (("escrow", "sign-csr", "bob-home/bob.csr", "--name", "eve"), {}, "not 'eve'"),
        (("escrow", "sign-csr", "hank.csr", "--out", "bob.pem"), {}, "already exists"),
        (("escrow", "revoke", "nobody"), {}, "no user named"),
        (("escrow", "revoke", "acme"), {}, "escrow itself"),
        (("escrow", "policy", "check", "alice", "nobody"), {}, "no user named"),
        (("escrow", "policy", "allow", "Bad Group", "x"), {}, "invalid group"),
    ],
    ids=[
        "register-twice",
        "register-escrow-name",
        "register-no-passphrase",
        "register-wrong-escrow-passphrase",
        "sign-not-a-csr",
        "sign-registered-name",
        "sign-name-mismatch",
        "sign-out-exists",
        "revoke-unknown",
        "revoke-escrow",
        "check-unknown",
        "bad-group",
    ],
)
def test_operator_refusals_change_nothing(
    world: Env, args: tuple[str, ...], extra: dict[str, str], fragment: str
) -> None:
    before = _users(world)
    policy_before = world.run("escrow", "policy", "show", "--json").out
    result = world.run(*args, **extra)
    assert_error(result, fragment)
    assert _users(world) == before
    assert world.run("escrow", "policy", "show", "--json").out == policy_before
    assert not (world.root / "zoe.identity").exists()


def test_register_revoke_and_crl(world: Env) -> None:
    reg = world.run(
        "escrow",
        "register",
        "carol",
        "--out",
        "carol.id",
        "--json",
        CONSIGN_IDENTITY_PASSPHRASE="carol pw",
    )
    assert reg.code == 0, reg
    carol = reg.json()
    assert isinstance(carol, dict)
    revoke = world.run("escrow", "revoke", "carol", "--reason", "key-compromise", "--json")
    assert revoke.code == 0, revoke
    revoked = revoke.json()
    assert isinstance(revoked, dict)
    assert set(revoked["revoked"]) == {
        carol["signing_fingerprint"],
        carol["encryption_fingerprint"],
    }
    assert "OK revoked 'carol'" in revoke.err
    users = {u["name"]: u for u in _users(world)}  # type: ignore[attr-defined]
    assert users["carol"]["revoked_at"] is not None
    again = world.run("escrow", "revoke", "carol")
    assert_error(again, "already revoked")
    crl = world.run("escrow", "crl", "--out", "acme.crl", "--json")
    assert crl.code == 0, crl
    data = crl.json()
    assert isinstance(data, dict)
    assert data["revoked"] >= 2
    assert (world.root / "acme.crl").read_text() == data["crl"]


def _openssl_verify(directory: Path, cert: str) -> subprocess.CompletedProcess[str]:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed to check the export with another tool"
    return subprocess.run(
        [openssl, "verify", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "-crl_check", cert],
        cwd=directory, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_certificates_export_in_pem_that_openssl_verifies(world: Env) -> None:
    reg = world.run("escrow", "register", "pam", "--out", "pam.id", CONSIGN_IDENTITY_PASSPHRASE="p")
    assert reg.code == 0, reg
    out = world.root / "pam-certs"
    exported = world.run("escrow", "certificates", "pam", "--out", str(out))
    assert exported.code == 0, exported
    names = {"ca.pem", "pam-signing.pem", "pam-encryption.pem", "crl.pem"}
    assert {p.name for p in out.iterdir()} == names
    for cert in ("pam-signing.pem", "pam-encryption.pem"):
        checked = _openssl_verify(out, cert)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.strip().endswith(": OK")
    # On stdout: the same four PEM blocks, nothing else.
    printed = world.run("escrow", "certificates", "pam")
    assert printed.code == 0, printed
    assert printed.out.count("-----BEGIN CERTIFICATE-----") == 3
    assert printed.out.count("-----BEGIN X509 CRL-----") == 1
    # Revoked: the CRL now listing it, openssl refuses the certificate it exported.
    assert world.run("escrow", "revoke", "pam").code == 0
    crl = world.run("escrow", "certificates", "alice", "--json")
    assert crl.code == 0, crl
    data = crl.json()
    assert isinstance(data, dict)
    (out / "crl.pem").write_text(data["crl"])
    refused = _openssl_verify(out, "pam-signing.pem")
    assert refused.returncode != 0
    assert "revoked" in (refused.stdout + refused.stderr)
    # ... and there is nothing current left to export.
    assert_error(world.run("escrow", "certificates", "pam"), "no current certificates")


def test_sign_csr_writes_the_bundle_to_stdout(world: Env) -> None:
    created = world.run(
        "id",
        "create",
        "dan",
        "--json",
        CONSIGN_IDENTITY_PASSPHRASE="dan pw",
        CONSIGN_HOME=str(world.root / "dan-home"),
    )
    assert created.code == 0, created
    request = created.json()
    assert isinstance(request, dict)
    signed = world.run("escrow", "sign-csr", request["request_file"], "--name", "dan")
    assert signed.code == 0, signed
    assert signed.out.count("-----BEGIN CERTIFICATE-----") == 3
    assert signed.out.count("-----BEGIN X509 CRL-----") == 1
    (world.root / "dan.pem").write_text(signed.out)
    ca_fp = world.run("escrow", "users", "--json")  # any command works; now pin the CA
    assert ca_fp.code == 0
    imported = world.run(
        "id",
        "import",
        "dan.pem",
        "--json",
        CONSIGN_IDENTITY_PASSPHRASE="dan pw",
        CONSIGN_HOME=str(world.root / "dan-home"),
    )
    assert imported.code == 0, imported
    data = imported.json()
    assert isinstance(data, dict)
    assert data["name"] == "dan"
    assert data["state"] == "complete"


def test_import_operator_identity_file_into_home(world: Env, tmp_path: Path) -> None:
    home = tmp_path / "alice-home"
    result = world.run(
        "id", "import", "alice.identity", "--home", str(home), CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW
    )
    assert result.code == 0, result
    assert (home / "alice.identity").read_bytes() == (world.root / "alice.identity").read_bytes()
    show = world.run("id", "show", "--home", str(home), CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW)
    assert show.out.startswith("name: alice\nstate: complete")
    kept = (home / "alice.identity").read_bytes()
    again = world.run(
        "id", "import", "alice.identity", "--home", str(home), CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW
    )
    assert_error(
        again,
        f"error: an identity 'alice' already exists in {home}",
        "hint: it is imported already (`consign id show alice`); to replace it, move ",
    )
    assert "choose another file name" not in again.err  # import has no file name to choose
    assert (home / "alice.identity").read_bytes() == kept


def test_policy_commands(world: Env) -> None:
    shown = world.run("escrow", "policy", "show", "--json")
    assert shown.json() == {"mode": "open", "rules": []}
    check = world.run("escrow", "policy", "check", "bob", "alice", "--json")
    assert check.json() == {"sender": "bob", "receiver": "alice", "allowed": True, "reason": None}
    assert world.run("escrow", "policy", "mode", "restricted").code == 0
    allow = world.run("escrow", "policy", "allow", "staff", "partners", "--json")
    assert allow.code == 0, allow
    assert allow.json() == {"mode": "restricted", "rules": [{"from": "staff", "to": "partners"}]}
    assert world.run("escrow", "policy", "check", "alice", "bob").out == "allowed\n"
    denied = world.run("escrow", "policy", "check", "bob", "alice")
    assert denied.code == 0
    assert denied.out.startswith("denied: no rule lets 'bob'")
    removed = world.run("escrow", "policy", "remove", "staff", "partners")
    assert removed.code == 0
    assert "removed" in removed.err
    assert world.run("escrow", "policy", "check", "alice", "bob").out.startswith("denied")
    assert world.run("escrow", "policy", "mode", "open").code == 0
    assert world.run("escrow", "policy", "check", "bob", "alice").out == "allowed\n"
    # A revoked user may neither send nor receive, whatever the policy says.
    made = world.run("escrow", "register", "gina", CONSIGN_IDENTITY_PASSPHRASE=ALICE_PW)
    assert made.code == 0, made
    assert world.run("escrow", "policy", "check", "alice", "gina").out == "allowed\n"
    assert world.run("escrow", "revoke", "gina").code == 0
    for pair in (("alice", "gina"), ("gina", "alice")):
        revoked = world.run("escrow", "policy", "check", *pair, "--json")
        assert revoked.code == 0, revoked
        assert revoked.json()["allowed"] is False
        assert "gina was revoked on" in revoked.json()["reason"]


def test_readme_identity_commands_run(tmp_path: Path) -> None:
    """The README's identity section, run as written (with `set -e`)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Identity: setting up an escrow") :]
    section = section[: section.index("\n## ", 1)]  # up to the next section
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 5
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    env["PATH"] = f"{Path(CONSIGN).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK revoked 'bob'" in proc.stderr
    assert (tmp_path / "acme.crl").read_text().startswith("-----BEGIN X509 CRL-----")


@pytest.mark.parametrize("command", [("escrow", "users"), ("escrow", "info"), ("escrow", "worker")])
def test_no_escrow_directory_says_which_variable(world: Env, command: tuple[str, ...]) -> None:
    result = world.run(*command, unset=("CONSIGN_ESCROW_DIR",))
    assert result.code == 2, result
    assert "set CONSIGN_ESCROW_DIR to the escrow data directory" in result.err
    assert "--escrow-dir" in result.err
    assert "Traceback" not in result.err

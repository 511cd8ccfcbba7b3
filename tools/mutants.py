"""Targeted mutation testing of the security checks: each mutant below deletes,
negates or loosens one check, and the tests named for it must then fail.

    python tools/mutants.py            # every mutant against its tests
    python tools/mutants.py --list     # the catalogue, without running anything
    python tools/mutants.py crl-sig    # only mutants whose id contains a word

Each mutant runs in a copy of the working tree (tracked and untracked, not
ignored files), with PYTHONPATH pointing at the copy so that the processes the
tests start (`consign`, workers) run the mutated code too. The checkout itself
is never changed. A mutant is killed when its tests fail (pytest exit 1); a
mutant whose tests pass survived, and the run exits 1. Any other pytest exit
(2, 4, 5) means the catalogue is wrong (a test id that no longer exists) and
also exits 1. `tests/e2e/test_mutants.py` checks that every `before` is still
found exactly once in its file, so the catalogue follows the code.

This tool never touches a secret, the broker or the database server: the tests
it runs use the same fixtures as the suite (their own vhost and database).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]
    why: str


DECIDE = ("tests/escrow_worker/test_decide.py", "tests/escrow_worker/test_decide_properties.py")

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "header-mac",
        "client/format/keys.py",
        "    if not verify_header_mac(key, header.mac_input(), header.mac):",
        "    if False:",
        ("tests/client/test_vectors.py", "tests/client/test_security.py"),
        "opening skips the header MAC check",
    ),
    Mutant(
        "commitment",
        "client/consignment.py",
        "            if not hmac.compare_digest(plain_hash.digest(), commitment):",
        "            if False:",
        ("tests/client/test_vectors.py", "tests/client/test_security.py"),
        "opening skips the plaintext commitment check",
    ),
    Mutant(
        "trailer-signature",
        "client/consignment.py",
        "            except InvalidSignature:\n                raise OpenError() from None\n"
        "            if not hmac",
        "            except InvalidSignature:\n                pass\n            if not hmac",
        ("tests/client/test_vectors.py",),
        "opening ignores a bad trailer signature",
    ),
    Mutant(
        "header-signature",
        "client/consignment.py",
        "        sender_key.verify(header.signature, header.signed_input())\n"
        "    except InvalidSignature:\n        raise OpenError() from None",
        "        sender_key.verify(header.signature, header.signed_input())\n"
        "    except InvalidSignature:\n        pass",
        ("tests/client/test_vectors.py", "tests/client/test_security.py"),
        "opening ignores a bad header signature (the trailer signature, which covers the "
        "header, would still refuse it, but only after unwrapping and decrypting)",
    ),
    Mutant(
        "crl-signature",
        "broker/pki/checks.py",
        "        or not _verified_once(\n"
        "            crl.public_bytes(Encoding.DER), ca, lambda: crl.is_signature_valid(ca_key)\n"
        "        )",
        "        or not True",
        ("tests/broker/test_pki_certs.py",),
        "certificate checks skip the CRL's signature",
    ),
    Mutant(
        "crl-issuer",
        "broker/pki/checks.py",
        "        or crl.issuer != ca.subject\n",
        "",
        ("tests/broker/test_pki_certs.py",),
        "certificate checks skip the CRL's issuer name (the signature check still refuses)",
    ),
    Mutant(
        "escrow-eku",
        "broker/pki/checks.py",
        "    if escrow and OID_EKU_ESCROW not in ekus:",
        "    if False:",
        ("tests/broker/test_pki_certs.py",),
        "the escrow's certificate need not carry the escrow EKU",
    ),
    Mutant(
        "revoked",
        "broker/pki/checks.py",
        "    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:",
        "    if False:",
        ("tests/broker/test_pki_certs.py",),
        "a revoked certificate is accepted",
    ),
    Mutant(
        "canonical-base64",
        "broker/canonical.py",
        "    if b64(data) != text:",
        "    if False:",
        ("tests/broker/test_envelope.py", "tests/broker/test_deposit.py"),
        "non-canonical base64 accepted in envelopes and deposits",
    ),
    Mutant(
        "lifetime-boundary",
        "escrow_worker/handlers/auth.py",
        "    if envelope.expires_at - envelope.issued_at > int(max_lifetime.total_seconds()):",
        "    if envelope.expires_at - envelope.issued_at >= int(max_lifetime.total_seconds()):",
        ("tests/escrow_worker/test_request_times.py",),
        "a request of exactly the longest lifetime is refused",
    ),
    Mutant(
        "lifetime-check",
        "escrow_worker/handlers/auth.py",
        "    if envelope.expires_at - envelope.issued_at > int(max_lifetime.total_seconds()):",
        "    if False:",
        ("tests/escrow_worker/test_request_times.py",),
        "a request of any lifetime is accepted",
    ),
    Mutant(
        "expires-before-issued",
        "escrow_worker/handlers/auth.py",
        "    if envelope.expires_at < envelope.issued_at:",
        "    if False:",
        ("tests/escrow_worker/test_request_times.py",),
        "a request that expires before it was issued is accepted",
    ),
    Mutant(
        "from-future",
        "escrow_worker/handlers/auth.py",
        "    if envelope.issued_at > t + skew:",
        "    if envelope.issued_at > t + 2 * skew:",
        ("tests/escrow_worker/test_request_times.py",),
        "a request issued beyond the allowed clock skew is accepted",
    ),
    Mutant(
        "expired",
        "escrow_worker/handlers/auth.py",
        "    if envelope.expires_at < t - skew:",
        "    if envelope.expires_at < t - 2 * skew:",
        ("tests/escrow_worker/test_request_times.py",),
        "a request expired beyond the allowed clock skew is accepted",
    ),
    Mutant(
        "reply-audience",
        "client/agent/verify.py",
        "    if envelope.audience != me:",
        "    if False:",
        ("tests/client/test_agent_verify.py",),
        "the agent ignores a reply's audience",
    ),
    Mutant(
        "release-no-current-key",
        "escrow_worker/handlers/decide.py",
        "    if current_key is None:\n        return Denial(",
        "    if False:\n        return Denial(",
        ("tests/escrow_worker/test_decide.py",),
        "release with no current encryption certificate",
    ),
    Mutant(
        "release-other-key",
        "escrow_worker/handlers/decide.py",
        "    if current_key != spec.encryption_key:\n        return Denial(",
        "    if False:\n        return Denial(",
        ("tests/escrow_worker/test_decide.py",),
        "release to a key that is not the one the consignment was sealed for",
    ),
    Mutant(
        "release-refused-certificate",
        "escrow_worker/handlers/common.py",
        "        except CertificateRejected:\n            key = None",
        "        except CertificateRejected:\n"
        "            key = raw_public_key(record.certificate.public_key())  # type: ignore",
        (
            "tests/escrow_worker/test_directory.py::test_no_current_key_when_the_stored_"
            "certificate_fails_the_checks",
        ),
        "release to a receiver whose encryption certificate the checks refuse",
    ),
    Mutant(
        "deposit-sender",
        "escrow_worker/handlers/decide.py",
        "    if requester.name != policy.sender:",
        "    if False:",
        DECIDE,
        "anyone may deposit in another sender's name",
    ),
    Mutant(
        "deposit-escrow",
        "escrow_worker/handlers/decide.py",
        "    if policy.escrow != escrow_name:",
        "    if False:",
        DECIDE,
        "a deposit sealed for another escrow is accepted",
    ),
    Mutant(
        "deposit-receiver-key",
        "escrow_worker/handlers/decide.py",
        "        if facts.current_key != spec.encryption_key:\n            return Denial(\n"
        "                ErrorCode.WRONG_KEY,",
        "        if False:\n            return Denial(\n                ErrorCode.WRONG_KEY,",
        DECIDE,
        "a deposit sealed to a key that is not the receiver's current one is accepted",
    ),
    Mutant(
        "deposit-trust",
        "escrow_worker/handlers/decide.py",
        "        if not trusted:\n            return Denial(ErrorCode.NOT_ALLOWED,",
        "        if False:\n            return Denial(ErrorCode.NOT_ALLOWED,",
        DECIDE,
        "a deposit the trust policy forbids is accepted",
    ),
    Mutant(
        "release-revoked",
        "escrow_worker/handlers/decide.py",
        "    if state.revoked_at is not None:",
        "    if False:",
        DECIDE,
        "a revoked receiver gets the key",
    ),
    Mutant(
        "release-digest",
        "escrow_worker/handlers/decide.py",
        "    if asked_digest != held_digest:",
        "    if False:",
        DECIDE,
        "the key is released for a consignment whose digest differs",
    ),
    Mutant(
        "release-trust-withdrawn",
        "escrow_worker/handlers/decide.py",
        "        if not trusted:\n            return Denial(\n"
        "                ErrorCode.TRUST_WITHDRAWN,",
        "        if False:\n            return Denial(\n                ErrorCode.TRUST_WITHDRAWN,",
        DECIDE,
        "the key is released after the trust policy stopped allowing it",
    ),
    Mutant(
        "release-receipt",
        "escrow_worker/handlers/decide.py",
        "    if attributes.receipt_required and not (facts is not None and facts.receipt):",
        "    if False:",
        DECIDE,
        "the key is released before the required receipt",
    ),
    Mutant(
        "release-cosigners",
        "escrow_worker/handlers/decide.py",
        "    if missing:",
        "    if False:",
        DECIDE,
        "the key is released before every co-signer has signed",
    ),
    Mutant(
        "window-not-before",
        "escrow_worker/handlers/decide.py",
        "    if attributes.not_before is not None and now < attributes.not_before:",
        "    if attributes.not_before is not None and now < attributes.not_before - 1:",
        DECIDE,
        "the key is released one second before not_before",
    ),
    Mutant(
        "window-not-after",
        "escrow_worker/handlers/decide.py",
        "    if attributes.not_after is not None and now > attributes.not_after:",
        "    if attributes.not_after is not None and now > attributes.not_after + 1:",
        DECIDE,
        "the key is released one second after not_after",
    ),
    Mutant(
        "window-ask-within",
        "escrow_worker/handlers/decide.py",
        "        if now > deadline:",
        "        if now > deadline + 1:",
        DECIDE,
        "the key is released one second after the ask-within window",
    ),
    Mutant(
        "window-never-notified",
        "escrow_worker/handlers/decide.py",
        "        if state.notified_at is None:\n            return Denial(",
        "        if state.notified_at is None:\n"
        "            return None\n            return Denial(",
        DECIDE,
        "an ask-within window opens without a notification",
    ),
    Mutant(
        "window-max-releases",
        "escrow_worker/handlers/decide.py",
        "state.releases >= attributes.max_releases:",
        "state.releases > attributes.max_releases:",
        DECIDE,
        "the key is released once more than max_releases",
    ),
)


def _copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def _apply(tree: Path, mutant: Mutant) -> None:
    target = tree / mutant.path
    text = target.read_text()
    count = text.count(mutant.before)
    if count != 1:
        raise SystemExit(f"{mutant.id}: `before` found {count} times in {mutant.path}")
    target.write_text(text.replace(mutant.before, mutant.after))


def run(mutant: Mutant, timeout: float) -> tuple[str, float]:
    """'killed', 'survived' or 'error: ...', and the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="consign-mutant-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        _apply(tree, mutant)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly"]
        cmd += ["-p", "no:cacheprovider", "--no-cov", *mutant.tests]
        try:
            done = subprocess.run(
                cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return "error: timed out", time.monotonic() - started
    took = time.monotonic() - started
    if done.returncode == 1:
        return "killed", took
    if done.returncode == 0:
        return "survived", took
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return f"error: pytest exit {done.returncode}: {' | '.join(tail)}", took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("words", nargs="*", help="run only mutants whose id contains one")
    parser.add_argument("--list", action="store_true", help="print the catalogue and stop")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.words or any(w in m.id for w in args.words)]
    if args.list:
        for m in chosen:
            print(f"{m.id:24} {m.path:34} {m.why}")
        return 0
    failed = 0
    total = time.monotonic()
    for mutant in chosen:
        outcome, took = run(mutant, args.timeout)
        failed += outcome != "killed"
        print(f"{outcome:10} {took:6.1f} s  {mutant.id:24} {mutant.why}", flush=True)
    killed = len(chosen) - failed
    print(
        f"{killed} of {len(chosen)} mutants killed in {time.monotonic() - total:.0f} s",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`consign receipts` and `consign cosign`: the receipts a sender keeps as proof
of delivery, and a co-signer's signature of a consignment's agreement.

Thin wrappers around `SenderAgent.attestations` and `CosignerAgent`. `cosign`
must never sign before it has shown what is signed (on stdout) and been told to
(a "yes" on the terminal, or `--yes`); `receipts` must never show a receipt as
verified unless it verified just now.
"""

from __future__ import annotations

import asyncio
import sys

import click

from broker.attest import StatementKind
from broker.canonical import duration
from broker.console import emit, iso, json_option, run, say
from client.agent import Agreement, Attested, CosignerAgent, SenderAgent, Signed
from client.agent.inputs import require_consignment_id
from client.cli._agentcli import AgentOptions, agent_options, running
from client.errors import AgentError


def _attested(a: Attested) -> dict[str, object]:
    return {
        "kind": a.kind.value,
        "consignment_id": a.consignment_id,
        "signer": a.signer,
        "signed_at": iso(a.signed_at),
        "recorded_at": iso(a.recorded_at),
        "consignment_digest": a.consignment_digest,
        "policy_digest": a.policy_digest.hex(),
        "certificate": a.certificate_fingerprint,
        "signature": a.signature.hex(),
        "verified": a.verified,
        "problem": a.problem,
    }


@click.command()
@click.argument("consignment_id", metavar="ID")
@click.option(
    "--cosignatures", is_flag=True, help="List the co-signatures that came too (kind agreement)."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds the inbox must stay quiet before the listing.",
)
@agent_options
@json_option
def receipts(
    opts: AgentOptions, consignment_id: str, cosignatures: bool, wait: float, as_json: bool
) -> None:
    """List the signed receipts of consignment ID's receivers (proofs of
    delivery, forwarded by the escrow), each verified again: the receiver's
    certificate against your CA and the escrow's revocation list, and its
    signature over the consignment id, digest and policy digest.

    Exit code 1 if one does not verify (it is listed, with why)."""
    require_consignment_id(consignment_id)  # before asking for a passphrase
    kind = None if cosignatures else StatementKind.RECEIPT

    async def go() -> list[Attested]:
        async with running(opts, SenderAgent) as agent:
            await agent.sync(idle=wait, timeout=max(opts.timeout, wait))
            return await agent.attestations(consignment_id, kind)

    found = [_attested(a) for a in run(go())]
    lines = [
        f"{a['kind']:<9} {a['signer']}  signed {a['signed_at']}  recorded {a['recorded_at']}  "
        + ("verified" if a["verified"] else f"NOT VERIFIED: {a['problem']}")
        for a in found
    ]
    emit(found, as_json, "\n".join(lines))
    bad = [a for a in found if not a["verified"]]
    if bad:
        raise AgentError(
            f"{len(bad)} of {len(found)} signed statement(s) of {consignment_id} do not verify",
            "keep them, and tell the escrow operator",
        )
    what = "receipt(s)" if kind is not None else "receipt(s) and co-signature(s)"
    say(f"OK {len(found)} {what}, each verified")


def _agreement(a: Agreement) -> dict[str, object]:
    policy = a.policy
    return {
        "consignment_id": a.consignment_id,
        "sender": a.sender,
        "deposited_at": iso(a.deposited_at),
        "consignment_digest": a.consignment_digest,
        "consignment_size": a.consignment_size,
        "policy_digest": a.policy_digest.hex(),
        "receivers": [
            {
                "name": r.name,
                "attributes": None if r.attributes is None else r.attributes.overrides(),
            }
            for r in policy.receivers
        ],
        "attributes": policy.attributes.model_dump(mode="json"),
        "cosigners": [{"name": c.name, "signed_at": iso(c.signed_at)} for c in a.cosigners],
    }


def _human(given: dict[str, object]) -> str:
    """Conditions as a person reads them: times in ISO 8601, durations in units."""
    shown = []
    for key, value in given.items():
        if value in (None, False, [], ()):
            continue
        if key in ("not_before", "not_after") and isinstance(value, int):
            value = iso(value)
        elif key == "ask_within_seconds" and isinstance(value, int):
            key, value = "ask_within", duration(value)
        elif isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif value is True:
            shown.append(key.replace("_required", ""))
            continue
        shown.append(f"{key} {value}")
    return ", ".join(shown) or "none"


def _agreement_text(data: dict[str, object]) -> str:
    receivers = data["receivers"]
    cosigners = data["cosigners"]
    assert isinstance(receivers, list)
    assert isinstance(cosigners, list)
    lines = [
        "You are asked to co-sign:",
        f"consignment: {data['consignment_id']}",
        f"sender: {data['sender']}",
        f"deposited: {data['deposited_at']}",
        f"digest: {data['consignment_digest']}",
        f"size: {data['consignment_size']}",
        f"policy digest: {data['policy_digest']} (recomputed from the policy below)",
    ]
    for r in receivers:
        own = r["attributes"]
        mine = f" (own conditions: {_human(own)})" if isinstance(own, dict) else ""
        lines.append(f"receiver: {r['name']}{mine}")
    attributes = data["attributes"]
    assert isinstance(attributes, dict)
    lines.append(f"conditions: {_human(attributes)}")
    for c in cosigners:
        when = f"signed {c['signed_at']}" if c["signed_at"] else "not yet signed"
        lines.append(f"co-signer: {c['name']} ({when})")
    return "\n".join(lines)


@click.command()
@click.argument("consignment_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Sign what is shown without asking.")
@click.option("--show", is_flag=True, help="Only show what would be signed.")
@agent_options
@json_option
def cosign(opts: AgentOptions, consignment_id: str, yes: bool, show: bool, as_json: bool) -> None:
    """Show what you are asked to co-sign for consignment ID (the escrow's copy
    of the policy, whose digest is recomputed here, the consignment's digest,
    who signed so far), then sign it: nobody gets the key part until every
    co-signer has. Asks on the terminal unless --yes."""
    require_consignment_id(consignment_id)  # before asking for a passphrase

    async def go() -> tuple[dict[str, object], Signed | None, str]:
        async with running(opts, CosignerAgent) as agent:
            agreement = await agent.agreement(consignment_id)
            data = _agreement(agreement)
            if not as_json:
                emit(data, False, _agreement_text(data))  # what is signed, first
            mine = next((c for c in agreement.cosigners if c.name == agent.name), None)
            if mine is None:
                return data, None, f"{agent.name} is not a co-signer of it"
            if mine.signed_at is not None:
                return data, None, f"{agent.name} signed it already, at {iso(mine.signed_at)}"
            if show:
                return data, None, "shown, not signed"
            if not yes:
                if not sys.stdin.isatty():
                    raise AgentError(
                        "not signed: nobody confirmed it",
                        "read what is shown, then run again with --yes to sign it",
                    )
                asked = f"Sign this agreement as {agent.name}?"
                if not await asyncio.to_thread(click.confirm, asked, err=True):
                    return data, None, "not signed"
            return data, await agent.cosign(agreement), "signed"

    data, signed, outcome = run(go())
    if as_json:
        result = None
        if signed is not None:
            result = {
                "signer": signed.signer,
                "signed_at": iso(signed.signed_at),
                "recorded_at": iso(signed.recorded_at),
                "cosigners": [
                    {"name": c.name, "signed_at": iso(c.signed_at)} for c in signed.cosigners
                ],
            }
        emit({"agreement": data, "signed": result}, True)
    if signed is None:
        say(f"OK {outcome}")
        return
    missing = [c.name for c in signed.cosigners if c.signed_at is None]
    say(
        f"OK {signed.signer} co-signed consignment {signed.consignment_id}; "
        + (f"still missing: {', '.join(missing)}" if missing else "every co-signer has signed")
    )

"""The control-attribute flags of `consign seal`, with human values, and the one
thing click cannot do by itself: flags that apply to one receiver.

    consign seal f.txt --to bob --to carol -o f.consignment \\
        --not-after 2026-12-31T00:00Z --receipt --cosign dave,erin \\
        --for bob --not-after 2027-01-31T00:00Z --max-releases 1

Flags before the first `--for` are the policy-wide attributes; the attribute
flags after `--for NAME` (`--not-before`, `--not-after`, `--ask-within`,
`--max-releases`, `--receipt`, `--no-receipt`) are NAME's own, until the next
`--for`. `SealCommand` moves them into a hidden option before click parses;
`receiver_attributes` turns them into `ReceiverAttributes`. Contradictions are
usage errors, before anything is read, looked up, sealed or deposited. This
module must never touch the network or a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import click
from pydantic import ValidationError

from broker.canonical import check_name, iso_utc
from broker.deposit import ControlAttributes, ReceiverAttributes
from broker.errors import BrokerError
from client.cli._agentcli import Duration, Timestamp

#: The attribute flags a receiver may have of its own, and whether each takes a value.
PER_RECEIVER: Final = {
    "--not-before": True,
    "--not-after": True,
    "--ask-within": True,
    "--max-releases": True,
    "--receipt": False,
    "--no-receipt": False,
}
_OWN: Final = "--own-attribute"
_SEP: Final = "\x00"


def split_for(args: Sequence[str]) -> list[str]:
    """`args` with each receiver's own flags moved into the hidden option."""
    out: list[str] = []
    current: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        flag, has_value, value = arg.partition("=")
        if flag == "--for":
            if not has_value:
                if i + 1 >= len(args):
                    raise click.UsageError("--for needs a receiver's name")
                i += 1
                value = args[i]
            current = value
            out += ["--for", value]
        elif current is not None and flag in PER_RECEIVER:
            if PER_RECEIVER[flag] and not has_value:
                if i + 1 >= len(args):
                    raise click.UsageError(f"{flag} (for {current}) needs a value")
                i += 1
                value = args[i]
            out += [_OWN, _SEP.join((current, flag, value))]
        else:
            out.append(arg)
        i += 1
    return out


class SealCommand(click.Command):
    """A command whose attribute flags after `--for NAME` are NAME's own."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, split_for(args))


def attribute_options(f: Any) -> Any:
    """The attribute flags: policy-wide, or (after `--for NAME`) NAME's own."""
    options = [
        click.option(
            "--not-before",
            type=Timestamp("up"),
            help="No release before this time (a fraction of a second rounds up).",
        ),
        click.option(
            "--not-after",
            type=Timestamp("down"),
            help="No release after this time (a fraction of a second rounds down).",
        ),
        click.option(
            "--ask-within",
            type=Duration(),
            help="Receivers must ask within this long of being notified (e.g. 7d).",
        ),
        click.option(
            "--max-releases",
            type=click.IntRange(min=1),
            help="Release the key part at most this often (per receiver).",
        ),
        click.option(
            "--receipt/--no-receipt",
            default=False,
            help="Each receiver must send a signed receipt before its key part is released "
            "(it goes to you as proof of delivery: `consign receipts ID`).",
        ),
        click.option(
            "--cosign",
            "cosign",
            multiple=True,
            metavar="NAMES",
            help="Co-signers (comma-separated, repeatable): registered parties who must all "
            "sign the agreement (`consign cosign ID`) before anyone gets the key part.",
        ),
        click.option(
            "--for",
            "for_names",
            multiple=True,
            metavar="NAME",
            help="The attribute flags after it (--not-before, --not-after, --ask-within, "
            "--max-releases, --receipt/--no-receipt) are receiver NAME's own, until the next "
            "--for; each replaces the policy-wide one for NAME.",
        ),
        click.option(_OWN, "own", multiple=True, hidden=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def cosigners(given: Sequence[str]) -> tuple[str, ...]:
    """`--cosign carol,dave --cosign erin` as ("carol", "dave", "erin")."""
    names = [n.strip() for item in given for n in item.split(",") if n.strip()]
    for name in names:
        try:
            check_name(name, "co-signer name")
        except BrokerError as exc:
            raise click.UsageError(f"--cosign: {exc.message} ({exc.hint})") from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise click.UsageError(f"--cosign names {', '.join(duplicates)} more than once")
    return tuple(names)


def policy_attributes(
    *,
    not_before: int | None,
    not_after: int | None,
    ask_within: int | None,
    max_releases: int | None,
    receipt: bool,
    cosign: Sequence[str],
) -> ControlAttributes:
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise click.UsageError(
            f"--not-after ({iso_utc(not_after)}) must be later than --not-before "
            f"({iso_utc(not_before)})"
        )
    try:
        return ControlAttributes(
            not_before=not_before,
            not_after=not_after,
            ask_within_seconds=ask_within,
            max_releases=max_releases,
            receipt_required=receipt,
            cosigners=cosigners(cosign),
        )
    except ValidationError as exc:
        raise click.UsageError(exc.errors()[0]["msg"]) from None


_FIELDS: Final = {
    "--not-before": ("not_before", Timestamp("up")),
    "--not-after": ("not_after", Timestamp("down")),
    "--ask-within": ("ask_within_seconds", Duration()),
    "--max-releases": ("max_releases", click.IntRange(min=1)),
}


def receiver_attributes(
    for_names: Sequence[str],
    own: Sequence[str],
    receivers: Sequence[str],
    policy: ControlAttributes,
) -> dict[str, ReceiverAttributes]:
    """Each `--for NAME`'s own attributes, checked against `--to` and against the
    policy-wide ones (a window must stay a window)."""
    given: dict[str, dict[str, Any]] = {name: {} for name in for_names}
    for item in own:
        name, flag, value = item.split(_SEP)
        converted: int | bool
        if flag in ("--receipt", "--no-receipt"):
            field, converted = "receipt_required", flag == "--receipt"
        else:
            field, kind = _FIELDS[flag]
            converted = kind.convert(value, None, None)
        if field in given[name]:
            raise click.UsageError(f"--for {name} gives {flag} twice")
        given[name][field] = converted
    out: dict[str, ReceiverAttributes] = {}
    for name, fields in given.items():
        if name not in receivers:
            raise click.UsageError(f"--for {name}: {name} is not a receiver (give it with --to)")
        if not fields:
            raise click.UsageError(f"--for {name} gives no attribute flag after it")
        try:
            out[name] = ReceiverAttributes(**fields)
            ControlAttributes.model_validate({**policy.model_dump(), **out[name].overrides()})
        except ValidationError as exc:
            raise click.UsageError(f"--for {name}: {exc.errors()[0]['msg']}") from None
    return out

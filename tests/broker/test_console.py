"""The root group's error handling: what escapes a command becomes an
"error:/hint:" pair on stderr and exit 1, never a traceback."""

from __future__ import annotations

import click
from click.testing import CliRunner
from pydantic import BaseModel, Field

from broker.console import ReportingGroup


class _Model(BaseModel):
    name: str = Field(pattern=r"^[a-z]+$")


def test_a_validation_error_is_one_error_line_and_a_hint() -> None:
    @click.group(cls=ReportingGroup)
    def root() -> None:
        pass

    @root.command()
    def bad() -> None:
        _Model(name="Not Valid")

    result = CliRunner().invoke(root, ["bad"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0] == (
        "error: invalid _Model: name: String should match pattern '^[a-z]+$' (got 'Not Valid')"
    )
    assert lines[1].startswith("hint: ")


def test_an_interrupt_is_reported_once_though_the_watchdog_reports_it_too() -> None:
    """The command unwinds and reports the interrupt; the watchdog that would end
    it after the grace period reports through the same reporter: one line, and a
    next command in the same process reports its own interrupt again."""
    import signal

    from broker import interrupts
    from broker.console import _report
    from broker.errors import Interrupted

    @click.group(cls=ReportingGroup)
    def root() -> None:
        pass

    @root.command()
    def stopped() -> None:
        _report(Interrupted(signal.SIGINT))  # the watchdog, first
        raise interrupts.Signalled(signal.SIGINT)  # then the command, unwound

    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(root, ["stopped"])
        assert result.exit_code == 128 + signal.SIGINT
        assert result.stderr == "error: interrupted by SIGINT; nothing was left half-written\n"


def test_a_signal_after_the_work_is_done_changes_nothing() -> None:
    """After `finished()`, SIGINT and SIGTERM are ignored to the end of the
    process, interpreter shutdown included: the command's exit status stands."""
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from broker import interrupts\n"
        "interrupts.finished()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('done')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "done\n", "")

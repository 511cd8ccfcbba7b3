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

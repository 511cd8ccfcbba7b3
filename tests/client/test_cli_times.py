"""`consign seal --not-before/--not-after`: times in whole seconds rounded so a
release is never early nor late (not-before up, not-after down), and a time
the escrow cannot hold is a usage error that names the option."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from client.cli._agentcli import Timestamp
from tests.cli_helpers import Env

T = 1893456000  # 2030-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "up", "down"),
    [
        ("2030-01-01T00:00:00Z", T, T),
        ("2030-01-01T00:00:00.000001Z", T + 1, T),
        ("2030-01-01T00:00:00.999999+00:00", T + 1, T),
        ("2030-01-01T01:00:00.5+01:00", T + 1, T),
        (str(T), T, T),
    ],
)
def test_sub_second_times_round_away_from_an_early_or_late_release(
    text: str, up: int, down: int
) -> None:
    assert Timestamp("up").convert(text, None, None) == up
    assert Timestamp("down").convert(text, None, None) == down


def test_times_before_1970_are_refused_in_words() -> None:
    with pytest.raises(click.BadParameter, match="before 1970-01-01T00:00:00Z"):
        Timestamp("up").convert("1969-12-31T23:59:59Z", None, None)


@pytest.mark.parametrize("option", ["--not-before", "--not-after"])
@pytest.mark.parametrize("value", ["1969-12-31T23:59:59Z", "1969-12-31T23:59:59.5Z"])
def test_a_time_before_1970_is_a_usage_error_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    (tmp_path / "x.txt").write_text("x")
    result = Env(tmp_path).run("seal", "x.txt", "--to", "bob", "-o", "o", option, value)
    assert result.code == 2, result
    assert f"Invalid value for '{option}'" in result.err
    assert "before 1970-01-01T00:00:00Z" in result.err
    assert "greater than or equal" not in result.err
    assert not (tmp_path / "o").exists()


def test_the_seal_command_rounds_not_before_up_and_not_after_down(tmp_path: Path) -> None:
    """00.2 .. 01.0 leaves no whole second once not-before is rounded up (a
    truncated not-before would have let the release come 0.2 s early)."""
    (tmp_path / "x.txt").write_text("x")
    result = Env(tmp_path).run(
        "seal",
        "x.txt",
        "--to",
        "bob",
        "-o",
        "o",
        "--not-before",
        "2030-01-01T00:00:00.2Z",
        "--not-after",
        "2030-01-01T00:00:01Z",
    )
    assert result.code == 2, result
    assert "--not-after (2030-01-01T00:00:01Z) must be later than --not-before" in result.err
    assert "(2030-01-01T00:00:01Z)" in result.err.split("--not-before", 1)[1]

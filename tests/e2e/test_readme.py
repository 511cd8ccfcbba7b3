"""The README runs as written: its Python example, and its walkthrough over
RabbitMQ command by command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cli_helpers import delete_topology

README = Path(__file__).parents[2] / "README.md"


def test_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README lost its Python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.strip() == "['report.pdf']"
    assert (tmp_path / "inbox" / "report.pdf").read_bytes() == b"%PDF-1.7 ..."


def walkthrough() -> str:
    text = README.read_text()
    section = text.split("## A walkthrough over RabbitMQ", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 4, "the walkthrough lost a step"
    return "\n".join(blocks)


@pytest.mark.rabbitmq
def test_walkthrough_runs_as_written(tmp_path: Path, amqp_url: str) -> None:
    """Every command of the RabbitMQ walkthrough, in one bash, as written (only
    the broker URL and a queue prefix of its own come from the test)."""
    script = walkthrough().replace("amqp://guest:guest@127.0.0.1:5672/", amqp_url)
    prefix = f"test-readme-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CONSIGN_QUEUE_PREFIX"] = prefix
    proc = subprocess.Popen(
        ["bash", "-c", f"set -euo pipefail\n{script}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the worker, if the script failed
            os.killpg(proc.pid, signal.SIGTERM)
        asyncio.run(delete_topology(amqp_url, prefix, ("alice", "bob")))
    assert proc.returncode == 0, err
    assert "Q3: revenue up 12%" in out
    cid = re.search(r"^consignment: ([0-9a-f]{32})$", out, re.M)
    assert cid is not None, out
    assert f"notified  {cid.group(1)}  from alice" in out
    assert f"complete  {cid.group(1)}  from alice" in out
    assert "received/report.txt  19" in out
    assert re.search(
        r"^receiver bob: notified 20\S+, requested 20\S+, released 1x .*, revoked 20", out, re.M
    ), out
    assert f"{cid.group(1)}  released  receiver=bob" in out
    assert f"{cid.group(1)}  revoked  receiver=bob" in out
    assert "OK opened 1 file(s) from alice into received" in err
    assert "error:" not in err

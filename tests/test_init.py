"""`andon init`: the starter agent it writes passes its own cancel test, and served by
`andon serve` it is cancelled with its tool's processes stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from andon.protocol.types import TaskState
from tests.helpers import process_group_alive
from tests.test_cli import ANDON
from tests.test_client import AndonServer, eventually
from tests.test_serve import command_groups


def init(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANDON, "init", *args], cwd=folder, capture_output=True, text=True, timeout=30
    )


def test_init_writes_an_agent_and_the_test_of_its_cancel_which_passes(tmp_path: Path) -> None:
    made = init(tmp_path, "bot")
    assert made.returncode == 0, made.stderr
    assert "wrote bot.py (the agent) and test_bot.py (the test of its cancel)" in made.stdout
    assert "andon serve bot.py" in made.stdout and "pytest test_bot.py" in made.stdout
    agent = (tmp_path / "bot.py").read_text()
    assert "await ctx.run(TOOL)" in agent and "await ctx.emit(" in agent
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bot.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    again = init(tmp_path, "bot")  # nothing is overwritten
    assert again.returncode == 2 and "bot.py exists already" in again.stderr
    assert (tmp_path / "bot.py").read_text() == agent
    bad = init(tmp_path, "my-bot")
    assert bad.returncode == 2 and "cannot be a Python module's name" in bad.stderr
    default = init(tmp_path)
    assert default.returncode == 0 and (tmp_path / "my_agent.py").exists()


def test_the_starter_agent_is_served_and_a_cancel_stops_its_tool(tmp_path: Path) -> None:
    assert init(tmp_path, "bot").returncode == 0
    with AndonServer(tmp_path, "bot.py") as served:
        task = served.client.send("cancellation", blocking=False)
        # The tool runs: its `sleep 2` is a process group of the server's.
        groups = eventually(
            lambda: command_groups(served.proc.pid, "sleep 2"), 15, "the tool running"
        )
        (pgid,) = groups
        stopped = served.client.cancel(task.id)
        assert stopped.status.state is TaskState.CANCELED
        assert (stopped.metadata or {})["andon.reason"] == "user"
        assert not process_group_alive(pgid), "the tool outlived its task"

"""`andon serve` as a process: start-up, the agent card, graceful shutdown."""

from __future__ import annotations

import fcntl
import gc
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import pytest

from andon.client import AndonClient
from andon.client.api import StreamEvent
from andon.client.errors import StreamLost
from andon.node import parts
from andon.protocol.types import TaskState, TaskStatusUpdateEvent
from andon.runtime.keeper import live_members, running
from andon.store.sqlite import SQLiteStore
from tests.helpers import children_of, eventually, process_group_alive

HEADERS = {"A2A-Version": "1.0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "ANDON_DEMO_TRACE": str(tmp_path / "trace.log"), **(env or {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "andon",
            "serve",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "serve.db"),
            "--log-level",
            "warning",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/.well-known/agent-card.json", timeout=1)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"server did not start: {proc.stderr.read()!r}") from None
            time.sleep(0.05)


def send(url: str, text: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": os.urandom(6).hex(),
                "role": "ROLE_USER",
                "parts": [{"text": text}],
            },
            "configuration": {"returnImmediately": True},
        },
    }
    reply = httpx.post(url, json=body, headers=HEADERS).json()
    return str(reply["result"]["task"]["id"])


def state_of(url: str, task_id: str) -> str:
    body = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task_id}}
    return str(httpx.post(url, json=body, headers=HEADERS).json()["result"]["status"]["state"])


def status_text(url: str, task_id: str) -> str:
    body = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task_id}}
    status = httpx.post(url, json=body, headers=HEADERS).json()["result"]["status"]
    return str(status["message"]["parts"][0]["text"])


def wait_for(check: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def stored(tmp_path: Path, task_id: str) -> tuple[TaskState, str | None]:
    store = SQLiteStore(tmp_path / "serve.db")
    await store.open()
    try:
        record = await store.get_task(task_id)
        assert record is not None
        return record.state, record.reason
    finally:
        await store.close()


async def test_sigterm_drains_then_cancels_with_reason_shutdown(tmp_path: Path) -> None:
    proc, url = start(tmp_path, "--drain", "1.0")
    try:
        short = send(url, "sleep 0.3")
        long = send(url, "sleep 30")
        wait_for(lambda: state_of(url, long) == "TASK_STATE_WORKING")
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await stored(tmp_path, short) == (TaskState.COMPLETED, None)
    assert await stored(tmp_path, long) == (TaskState.CANCELED, "shutdown")


async def test_sigterm_ends_the_streams_of_queued_tasks_with_a_notice_and_leaves_them_queued(
    tmp_path: Path,
) -> None:
    # One slot, taken: the streamed task waits in the queue when the server stops. Its
    # stream must end with an event that says so (not be cut), and under the cancel
    # policy that end is the server's doing, not a dropped client: the task stays queued
    # and runs after the restart.
    proc, url = start(
        tmp_path, "--max-concurrent", "1", "--drain", "0", "--on-disconnect", "cancel"
    )
    try:
        running = send(url, "sleep 30")
        wait_for(lambda: state_of(url, running) == "TASK_STATE_WORKING")
        events: list[StreamEvent] = []
        async with AndonClient(url, reconnect_attempts=0) as client:
            stream = client.stream("echo queued")
            with pytest.raises(StreamLost) as lost:
                async for event in stream:
                    events.append(event)
                    if len(events) == 1:
                        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "andon is stopping" in str(lost.value)
    queued = events[0].task_id
    assert queued is not None and lost.value.task_id == queued
    last = events[-1].item
    assert isinstance(last, TaskStatusUpdateEvent)
    assert last.status.state is TaskState.SUBMITTED and not last.final
    assert (last.metadata or {})["andon.streamEnd"] == "server-stopping"
    assert await stored(tmp_path, queued) == (TaskState.SUBMITTED, None)
    assert await stored(tmp_path, running) == (TaskState.CANCELED, "shutdown")

    proc, url = start(tmp_path)
    try:
        wait_for(lambda: state_of(url, queued) == "TASK_STATE_COMPLETED")
    finally:
        proc.kill()
        proc.wait()


async def test_restart_fails_tasks_a_killed_server_left_running(tmp_path: Path) -> None:
    proc, url = start(tmp_path)
    task_id = send(url, "sleep 30")
    wait_for(lambda: state_of(url, task_id) == "TASK_STATE_WORKING")
    proc.kill()
    proc.wait(10)
    proc, url = start(tmp_path)
    try:
        assert state_of(url, task_id) == "TASK_STATE_FAILED"
        said = status_text(url, task_id)
        assert "stopped (killed or crashed)" in said and "andon retry" in said
    finally:
        proc.terminate()
        proc.wait(20)
    assert await stored(tmp_path, task_id) == (TaskState.FAILED, "worker_lost")


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_serving_without_auth_off_loopback_warns(tmp_path: Path, host: str) -> None:
    proc, _ = start(tmp_path, "--host", host)
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert b"without authentication" in err


async def test_a_killed_server_takes_the_commands_of_its_tasks_down(tmp_path: Path) -> None:
    proc, url = start(tmp_path)
    marker = "sleep 303"
    send(url, f"shell sh -c '{marker} & {marker}; wait'")
    wait_for(lambda: len(command_groups(proc.pid, marker)) == 1)
    (pgid,) = command_groups(proc.pid, marker)
    wait_for(lambda: len(live_members(pgid)) >= 3)  # the shell and both sleeps

    proc.kill()  # no clean-up of its own: the lifeline's keeper must do it
    proc.wait(10)

    wait_for(lambda: not process_group_alive(pgid))


def test_the_keeper_starts_with_the_first_command_a_task_runs(tmp_path: Path) -> None:
    """A server whose agents have run no command has nothing for a keeper to end: its
    10 MiB interpreter starts with the first command (the kill tests above show it then
    does its job)."""
    proc, url = start(tmp_path)
    try:
        task_id = send(url, "echo hi")
        wait_for(lambda: state_of(url, task_id) == "TASK_STATE_COMPLETED")
        assert command_groups(proc.pid, "keeper.py") == set()
        task_id = send(url, "shell true")
        wait_for(lambda: state_of(url, task_id) == "TASK_STATE_COMPLETED")
        assert len(command_groups(proc.pid, "keeper.py")) == 1
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("containment", ["subreaper", "cgroup"])
def test_a_killed_server_takes_escaped_processes_down(tmp_path: Path, containment: str) -> None:
    proc, url = start(tmp_path, env={"ANDON_CONTAINMENT": containment})
    pid_file = tmp_path / "escaped.pid"
    escape = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' >/dev/null 2>&1"
    send(url, f"shell {escape} & sleep 300")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    escaped = int(pid_file.read_text())
    assert os.getsid(escaped) == escaped  # a session of its own: out of every group

    proc.kill()  # no clean-up of its own: the lifeline's keeper must do it
    proc.wait(10)

    wait_for(lambda: not running(escaped))
    assert proc.stderr is not None
    assert f"their processes are held in a {containment} cell" in proc.stderr.read().decode()


def command_groups(parent: int, fragment: str) -> set[int]:
    """Process groups of the parent's live children whose command line has the fragment."""
    groups = set()
    for pid in children_of(parent):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline:
            groups.add(os.getpgid(pid))
    return groups


def test_the_banner_says_where_what_how_to_try_and_what_a_dropped_stream_does(
    tmp_path: Path,
) -> None:
    proc, url = start(tmp_path, "--log-level", "info")
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    said = err.decode()
    assert "■ andon · serving 'andon demo' (skill: demo)" in said
    assert f"web page     {url}/" in said and f"API docs     {url}/docs" in said
    assert f"try it       andon send --url {url} 'sleep 30'   then Ctrl+C there" in said
    assert f"tasks kept   {tmp_path / 'serve.db'} (SQLite)" in said
    assert "a stream closed early leaves its task running (--on-disconnect continue" in said
    assert "Uvicorn running on" not in said and "Started server process" not in said

    proc, _ = start(tmp_path, "--on-disconnect", "cancel", "--log-level", "info")
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert "a stream closed early cancels its task (--on-disconnect cancel)" in err.decode()


def test_ctrl_c_of_make_run_stops_the_server_without_an_error_from_make(tmp_path: Path) -> None:
    """`make run` in a terminal, Ctrl+C typed at it: the server stops cleanly (exit 0),
    so make has no error to report."""
    repo = Path(__file__).resolve().parent.parent
    port = free_port()
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    args = f"--port {port} --db {tmp_path / 'run.db'} --drain 0"
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(repo), "run", f"ARGS={args}"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    shown = bytearray()

    def read() -> str:
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown.extend(chunk)
        return shown.decode(errors="replace")

    try:
        wait_for(lambda: "Ctrl+C here stops the server" in read(), timeout=30)
        os.write(master, b"\x03")
        make.wait(20)
        text = read()
    finally:
        if make.poll() is None:
            make.kill()
        os.close(master)
    assert "■ andon stopping" in text
    assert "make: ***" not in text and "Error 130" not in text and "Traceback" not in text


def artifact_text(url: str, task_id: str) -> str:
    body = {"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": task_id}}
    task = httpx.post(url, json=body, headers=HEADERS).json()["result"]
    return "".join(part["text"] for a in task["artifacts"] for part in a["parts"])


def loaded_modules(url: str) -> set[str]:
    """The modules of the server's process, as the footprint agent reports them."""
    task_id = send(url, "modules")
    wait_for(lambda: state_of(url, task_id) == "TASK_STATE_COMPLETED")
    return set(artifact_text(url, task_id).split())


def test_a_server_loads_httpx_at_its_agents_first_request_and_never_the_client(
    tmp_path: Path,
) -> None:
    # The command-line client (andon.client, with rich) and httpx, which imports rich
    # and pygments whenever they are installed, are memory a serving process would hold
    # for nothing: httpx comes with an agent's first ctx.http request, the client never.
    agent = Path(__file__).parent / "agents" / "footprint.py"
    proc, url = start(tmp_path, str(agent))
    try:
        loaded = loaded_modules(url)
        assert {"andon.node.serve", "uvicorn", "pydantic"} <= loaded
        assert "andon.client" not in loaded
        tops = {name.split(".")[0] for name in loaded}
        assert tops.isdisjoint({"httpx", "httpcore", "rich", "pygments"}), tops

        fetch = send(url, f"fetch {url}/.well-known/agent-card.json")
        wait_for(lambda: state_of(url, fetch) == "TASK_STATE_COMPLETED")
        assert artifact_text(url, fetch) == "200"
        assert "httpx" in loaded_modules(url)
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_server_loads_prometheus_client_at_its_first_scrape_and_counts_from_its_start(
    tmp_path: Path,
) -> None:
    # prometheus-client imports an HTTP server, an HTTP client and more for its own
    # exposition: a process nobody scrapes holds none of it, and loses no count for it.
    agent = Path(__file__).parent / "agents" / "footprint.py"
    proc, url = start(tmp_path, str(agent))
    try:
        assert "prometheus_client" not in {name.split(".")[0] for name in loaded_modules(url)}

        scrape = httpx.get(f"{url}/metrics", timeout=10)
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        lines = scrape.text.splitlines()
        assert "andon_tasks_created_total 1.0" in lines
        assert 'andon_tasks_ended_total{reason="none",state="completed"} 1.0' in lines

        assert "prometheus_client" in loaded_modules(url)
    finally:
        proc.terminate()
        proc.wait(20)


async def test_an_andon_process_collects_young_objects_less_often_as_its_heap_grows() -> None:
    """tune_collector, as `andon serve` and `andon worker` call it once started: the
    young generation's threshold starts at YOUNG_COLLECTION_EVERY and follows the heap
    (a crowd's), back down as the heap shrinks."""
    saved = gc.get_threshold()
    try:
        before = sys.getallocatedblocks()
        parts.tune_collector()
        after = sys.getallocatedblocks()
        young, middle, oldest = gc.get_threshold()
        assert (middle, oldest) == (10, parts.OLDEST_COLLECTION_EVERY)
        floor = parts.YOUNG_COLLECTION_EVERY
        share = parts.HEAP_PER_YOUNG_OBJECT
        assert (
            max(floor, min(before, after) // share)
            <= young
            <= max(floor, max(before, after) // share)
        )
        heap = [[n] for n in range(3_000_000)]  # a million blocks and more
        raised = max(floor, after // share) + 1_000_000 // share
        await eventually(lambda: gc.get_threshold()[0] >= raised, message="threshold raised")
        del heap
        await eventually(lambda: gc.get_threshold()[0] < raised, message="threshold lowered")
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)

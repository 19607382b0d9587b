"""The `andon` command line, run for real: the installed `andon` executable in a
pseudo-terminal (Ctrl+C is the byte 0x03 typed at it), against `andon serve`
subprocesses. Everything waits on deadlines by polling, never on bare sleeps."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.protocol.types import TaskState
from tests.test_client import AndonServer, Proxy, eventually, free_port, steady

ANDON = str(Path(sys.executable).with_name("andon"))
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78]"
)


def _take_terminal() -> None:
    # In the child, after setsid: the pty becomes its controlling terminal, so that
    # Ctrl+C typed at it is a SIGINT to the command.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The andon command (or `program`) in a pseudo-terminal of 120x40, its output read
    continuously."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        program: str = ANDON,
        cwd: Path | None = None,
    ) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("ANDON_") or k == "PATH"
        }
        environment.update({"TERM": "xterm-256color", **(env or {})})
        environment.pop("COLUMNS", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [program, *args],
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.master = master
        self._raw = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the command and every holder of the pty are gone
                return
            if not chunk:
                return
            with self._lock:
                self._raw.extend(chunk)

    @property
    def raw(self) -> bytes:
        """Everything the command wrote so far, escape sequences included."""
        with self._lock:
            return bytes(self._raw)

    @property
    def text(self) -> str:
        """Everything shown so far, without escape sequences or carriage returns."""
        return ANSI.sub("", self.raw.decode(errors="replace")).replace("\r", "")

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            found = compiled.search(self.text)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not shown in {timeout}s; shown:\n{self.text}")
            if self.proc.poll() is not None:
                self._reader.join(2)
                found = compiled.search(self.text)
                if found:
                    return found
                raise AssertionError(
                    f"{pattern!r} not shown; exited {self.proc.returncode}:\n{self.text}"
                )
            time.sleep(0.01)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def ctrl_c(self) -> None:
        self.type(b"\x03")

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)
        self._reader.join(2)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def andon(terminals: list[Terminal], *args: str, env: dict[str, str] | None = None) -> Terminal:
    terminal = Terminal(*args, env=env)
    terminals.append(terminal)
    return terminal


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """The command with pipes (no terminal), as a script would run it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANDON_")}
    environment.update(env or {})
    return subprocess.run(
        [ANDON, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("cli")) as served:
        yield served


# -- Ctrl+C, kill, questions -----------------------------------------------------------


def test_ctrl_c_cancels_the_task_with_reason_user_and_its_work_stops(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(terminals, "send", "--url", server.url, "sleep 30")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    eventually(lambda: len(server.trace(task_id)) >= 3, message="the task's steps")
    term.ctrl_c()
    term.expect("canceling…")
    shown = term.expect(
        r"■ canceled in (\d+) ms \(reason: user\) · its work stopped in [\d.]+ ms\n"
    )
    assert term.wait() == 130
    assert term.text.count("canceled") == 1  # the closing line says it once
    task = server.client.get(task_id)
    assert task.status.state is TaskState.CANCELED
    assert (task.metadata or {})["andon.reason"] == "user"
    assert int(shown.group(1)) < 5000
    steady(lambda: len(server.trace(task_id)), 0.5)  # five steps' time: no new step


def test_a_kill_after_the_grace_is_told_in_words(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(
        terminals, "send", "--url", server.url, "shell trap '' TERM; echo armed; sleep 300"
    )
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    term.expect("armed")
    term.ctrl_c()
    term.expect(r"1 process killed after the [\d.]+ s grace")
    assert term.wait() == 130
    shown = run("tasks", "get", task_id, "--url", server.url)
    assert re.search(
        r"stopped in [\d.]+ s: 1 process killed after the [\d.]+ s grace", shown.stdout
    )


def test_a_second_ctrl_c_exits_at_once_and_the_task_still_ends_canceled(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    # The command ignores SIGTERM: stopping it takes the server's kill grace (2 s),
    # the time the second Ctrl+C does not wait for.
    term = andon(terminals, "send", "--url", server.url, "shell trap '' TERM; echo ready; sleep 30")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    term.expect("ready")
    term.ctrl_c()
    term.expect("canceling…")
    eventually(
        lambda: (server.client.get(task_id).metadata or {}).get("andon.canceling"),
        message="the server canceling the task",
    )
    pressed = time.monotonic()
    term.ctrl_c()
    assert term.wait() == 130
    assert time.monotonic() - pressed < 1.0
    assert "exiting" in term.text
    assert server.client.get(task_id).status.state is TaskState.WORKING  # still stopping
    task = server.client.wait(task_id, timeout=15)
    assert task.status.state is TaskState.CANCELED
    assert (task.metadata or {})["andon.reason"] == "user"


def test_sigterm_ends_the_status_line_and_says_what_becomes_of_the_task(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(terminals, "send", "--url", server.url, "sleep 30")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    term.expect(r"working · [\d.]+ s")
    term.proc.terminate()
    assert term.wait() == 143
    assert term.text.endswith("terminated; the server cancels the task as this stream closes\n")
    raw = term.raw
    assert raw.rfind(b"\x1b[?25h") > raw.rfind(b"working"), "the cursor is left hidden"
    task = server.client.wait(task_id, timeout=10)
    assert (task.metadata or {})["andon.reason"] == "client_disconnect"


def test_detach_prints_the_id_and_ids_may_be_shortened(server: AndonServer) -> None:
    detached = run("send", "--url", server.url, "--detach", "sleep 30")
    assert detached.returncode == 0
    task_id = detached.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", task_id) and f"andon watch {task_id}" in detached.stderr
    server.client.wait(task_id, timeout=10, until=frozenset({TaskState.WORKING}))
    shown = run("tasks", "get", task_id[:8], "--url", server.url)
    assert shown.returncode == 0 and task_id in shown.stdout and "sleep 30" in shown.stdout
    canceled = run("cancel", task_id[:6], "--url", server.url)
    assert canceled.returncode == 0 and f"■ {task_id} canceled (user)" in canceled.stdout
    watched = run("watch", task_id[:5], "--url", server.url)
    assert watched.returncode == 130 and "(reason: user)" in watched.stderr

    # Two ids that begin alike: their common prefix is refused, saying so.
    seen: dict[str, str] = {}
    while True:
        other = server.client.send("echo x", blocking=False).id
        if other[:4] in seen:
            break
        seen[other[:4]] = other
    ambiguous = run("tasks", "get", other[:4], "--url", server.url)
    assert ambiguous.returncode == 2
    assert (
        f"{other[:4]} is the start of " in ambiguous.stderr
        and "give more of it" in ambiguous.stderr
    )
    too_short = run("tasks", "get", task_id[:3], "--url", server.url)
    assert too_short.returncode == 2 and "unknown task" in too_short.stderr


def test_killing_the_client_cancels_the_task_with_reason_client_disconnect(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(terminals, "send", "--url", server.url, "sleep 30")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    eventually(lambda: len(server.trace(task_id)) >= 2, message="the task's steps")
    term.proc.kill()
    term.wait()
    task = server.client.wait(task_id, timeout=10)
    assert task.status.state is TaskState.CANCELED
    assert (task.metadata or {})["andon.reason"] == "client_disconnect"
    steady(lambda: len(server.trace(task_id)), 0.5)


def test_a_question_is_asked_at_the_prompt_and_the_same_task_completes(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(terminals, "send", "--url", server.url, "ask your name?")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    term.expect(r"\? your name\?\n> ")
    term.type(b"Ada\r")
    term.expect("✓ completed")
    assert term.wait() == 0
    task = server.client.get(task_id)
    assert task.status.state is TaskState.COMPLETED
    assert task.status.message is not None and task.status.message.text == "Ada"
    assert [m.text for m in task.history or []] == ["ask your name?", "your name?", "Ada", "Ada"]


def test_no_input_exits_3_and_says_how_to_answer(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(terminals, "send", "--url", server.url, "--no-input", "ask your name?")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    assert term.wait() == 3
    assert f"andon send --task {task_id}" in term.text
    assert server.client.get(task_id).status.state is TaskState.INPUT_REQUIRED
    # ... and that is how it is answered.
    answered = run("send", "--url", server.url, "--task", task_id, "Grace")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == "Grace"
    assert server.client.get(task_id).status.state is TaskState.COMPLETED


def test_ctrl_c_at_the_prompt_cancels_the_waiting_task(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    term = andon(terminals, "send", "--url", server.url, "ask anything?")
    task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
    term.expect("> ")
    term.ctrl_c()
    term.expect(r"canceled in \d+ ms")
    assert term.wait() == 130
    task = server.client.get(task_id)
    assert task.status.state is TaskState.CANCELED
    assert (task.metadata or {})["andon.reason"] == "user"


# -- watch -----------------------------------------------------------------------------


def test_watch_survives_cut_connections_and_shows_every_event_once(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    proxy = Proxy(server.port)
    try:
        task = server.client.send("stream 60", blocking=False)
        term = andon(terminals, "watch", task.id, "--url", proxy.url, "--json")

        def chunks() -> int:
            return sum(e["kind"] == "artifact-update" for e in json_lines(term.text))

        eventually(lambda: chunks() >= 8, message="8 chunks watched")
        proxy.cut()
        eventually(lambda: proxy.accepted >= 2 and chunks() >= 20, message="resumed")
        proxy.cut()
        assert term.wait() == 0
        assert proxy.accepted >= 3
    finally:
        proxy.close()
    events = json_lines(term.text)
    texts = [e["artifact"]["parts"][0]["text"] for e in events if e["kind"] == "artifact-update"]
    assert texts == [f"chunk {i}\n" for i in range(60)]
    seqs = [e["seq"] for e in events]
    # Every event of the task's stream, each once, in order: as a replay shows them.
    assert seqs == [e.seq for e in server.client.subscribe(task.id, last_event_id=0)]
    assert events[-1]["status"]["state"] == "completed"


def test_watch_counts_elapsed_time_from_the_tasks_start(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    task = server.client.send("sleep 30", blocking=False)
    eventually(lambda: len(server.trace(task.id)) >= 20, message="two seconds of steps")
    term = andon(terminals, "watch", task.id, "--url", server.url)
    shown = term.expect(r"working · (\d+\.\d) s")
    assert float(shown.group(1)) >= 2.0, term.text
    server.client.cancel(task.id)
    assert term.wait() == 130


def test_a_dead_server_shows_reconnecting_at_once(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    with AndonServer(tmp_path) as doomed:
        term = andon(terminals, "send", "--url", doomed.url, "sleep 30")
        task_id = term.expect(r"task ([0-9a-f]{32})").group(1)
        term.expect(r"working · [\d.]+ s · step")
        doomed.proc.kill()
        died = time.monotonic()
        term.expect(r"reconnecting \(1/6\)…")
        shown_after = time.monotonic() - died
        said = term.expect(r"lost the connection to the server \(.+?\); reconnecting\.")
        assert shown_after < 1.0, f"reconnecting shown {shown_after:.2f} s after the death"
        term.expect(f"if the server is down, start it again \\(`andon watch {task_id}`")
        assert "working" not in term.text[said.end() :].split("reconnecting (1/6)")[-1]
        print(f"server death to reconnecting shown: {shown_after * 1000:.0f} ms")


def test_watch_shows_a_task_that_has_ended_and_its_exit_code(server: AndonServer) -> None:
    task = server.client.send("fail on purpose")
    watched = run("watch", task.id, "--url", server.url)
    assert watched.returncode == 1
    assert "failed" in watched.stderr and "on purpose" in watched.stderr


# -- scripts: --json, exit codes, tasks, cancel, retry ---------------------------------


def test_send_json_prints_one_object_a_line(server: AndonServer) -> None:
    sent = run("send", "--url", server.url, "--json", "stream 3")
    assert sent.returncode == 0, sent.stderr
    events = json_lines(sent.stdout)
    assert len(events) == len(sent.stdout.splitlines())
    assert events[0]["kind"] == "task" and events[0]["status"]["state"] == "submitted"
    assert [e["artifact"]["parts"][0]["text"] for e in events if "artifact" in e] == [
        "chunk 0\n",
        "chunk 1\n",
        "chunk 2\n",
    ]
    assert events[-1]["kind"] == "status-update" and events[-1]["final"] is True
    assert events[-1]["status"]["state"] == "completed"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))


def test_exit_codes_and_plain_output(server: AndonServer) -> None:
    echoed = run("send", "--url", server.url, "echo hello there")
    assert (echoed.returncode, echoed.stdout) == (0, "hello there")
    assert "✓ completed" in echoed.stderr
    failed = run("send", "--url", server.url, "fail boom")
    assert failed.returncode == 1 and "boom" in failed.stderr
    polled = run("send", "--url", server.url, "--no-stream", "--json", "sleep 0.2")
    assert polled.returncode == 0
    (task,) = json_lines(polled.stdout)
    assert task["status"]["state"] == "completed"
    timed = run("send", "--url", server.url, "--timeout", "0.3", "sleep 30")
    assert timed.returncode == 124 and "(reason: timeout)" in timed.stderr
    no_input = run("send", "--url", server.url, "ask who?")  # stdin is not a terminal
    assert no_input.returncode == 3
    usage = run("send", "--url", server.url, "--on-disconnect", "sometimes", "echo x")
    assert usage.returncode == 2 and "--on-disconnect" in usage.stderr


def test_tasks_list_and_get(server: AndonServer) -> None:
    context = os.urandom(8).hex()
    first = run("send", "--url", server.url, "--context", context, "--json", "echo one")
    run("send", "--url", server.url, "--context", context, "fail two")
    task_id = json_lines(first.stdout)[0]["id"]

    listed = run("tasks", "list", "--url", server.url, "--context", context, "--json")
    assert listed.returncode == 0
    tasks = json_lines(listed.stdout)
    assert [(t["contextId"], t["status"]["state"]) for t in tasks] == [
        (context, "failed"),
        (context, "completed"),
    ]
    only = run("tasks", "list", "--url", server.url, "--context", context, "--state", "failed")
    assert only.returncode == 0 and "fail two" in only.stdout and task_id not in only.stdout
    table = run("tasks", "list", "--url", server.url, "--context", context)
    assert task_id in table.stdout and "completed" in table.stdout

    got = run("tasks", "get", task_id, "--url", server.url, "--json")
    (task,) = json_lines(got.stdout)
    assert (task["id"], task["status"]["state"]) == (task_id, "completed")
    shown = run("tasks", "get", task_id, "--url", server.url)
    assert "echo one" in shown.stdout and "── response ──" in shown.stdout

    bad = run("tasks", "list", "--url", server.url, "--state", "sleepy")
    assert bad.returncode == 2 and "sleepy" in bad.stderr


def test_cancel_by_id_by_context_and_by_state(
    server: AndonServer, terminals: list[Terminal]
) -> None:
    context = os.urandom(8).hex()
    tasks = [server.client.send("sleep 30", context_id=context, blocking=False) for _ in range(3)]
    for task in tasks:
        server.client.wait(task.id, timeout=10, until=frozenset({TaskState.WORKING}))

    one = run("cancel", tasks[0].id, "--url", server.url)
    assert one.returncode == 0 and "stopped in" in one.stdout
    again = run("cancel", tasks[0].id, "--url", server.url)
    assert again.returncode == 1 and "already canceled" in again.stderr

    refused = run("cancel", "--context", context, "--url", server.url)  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr

    term = andon(
        terminals, "cancel", "--context", context, "--state", "working", "--url", server.url
    )
    term.expect(r"Cancel 2 tasks in state working of context \w+\? \[y/N\]")
    term.type(b"y\r")
    assert term.wait() == 0
    for task in tasks[1:]:
        ended = server.client.get(task.id)
        assert ended.status.state is TaskState.CANCELED
        assert (ended.metadata or {})["andon.reason"] == "operator"

    more = server.client.send("sleep 30", context_id=context, blocking=False)
    server.client.wait(more.id, timeout=10, until=frozenset({TaskState.WORKING}))
    scripted = run("cancel", "--context", context, "--yes", "--json", "--url", server.url)
    assert scripted.returncode == 0
    (line,) = json_lines(scripted.stdout)
    assert (line["id"], line["state"]) == (more.id, "canceled")
    nothing = run("cancel", "--context", context, "--url", server.url)
    assert nothing.returncode == 0 and "no unfinished task" in nothing.stderr


def test_retry_runs_an_ended_task_again(server: AndonServer) -> None:
    failed = server.client.send("fail once")
    retried = run("retry", failed.id, "--url", server.url, "--json")
    assert retried.returncode == 1  # the same request fails the same way
    events = json_lines(retried.stdout)
    new_id = events[-1]["taskId"]
    assert new_id != failed.id
    again = server.client.get(new_id)
    assert (again.metadata or {})["andon.retryOf"] == failed.id
    assert again.context_id == failed.context_id


# -- errors a person can act on --------------------------------------------------------


def test_errors_are_one_line_with_what_to_do(server: AndonServer) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    down = run("send", "--url", nowhere, "echo hi")
    assert down.returncode == 2
    assert down.stderr.count("\n") == 1 and nowhere in down.stderr
    assert "Traceback" not in down.stderr
    debug = run("tasks", "list", "--url", nowhere, "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr

    unknown = run("tasks", "get", "feedface", "--url", server.url)
    assert unknown.returncode == 2 and "unknown task" in unknown.stderr
    assert unknown.stderr.count("\n") == 1
    cancel_unknown = run("cancel", "feedface", "--url", server.url)
    assert cancel_unknown.returncode == 1 and "not found" in cancel_unknown.stderr


@contextlib.contextmanager
def not_http() -> Iterator[str]:
    """A port that answers like an SSH server, not HTTP: its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_cryptic_errors_say_what_happened_and_what_to_do(
    server: AndonServer, tmp_path: Path
) -> None:
    bare = server.url.removeprefix("http://")
    no_scheme = run("send", "--url", bare, "echo hi")
    assert no_scheme.returncode == 2
    assert f"has no scheme: write http://{bare}" in no_scheme.stderr
    assert no_scheme.stderr.count("\n") == 1

    with not_http() as url:
        for args in (("send", "echo hi"), ("tasks", "list")):
            wrong_port = run(*args, "--url", url)
            assert wrong_port.returncode == 2, wrong_port.stderr
            said = wrong_port.stderr
            assert f"{url} closed the connection without an HTTP answer" in said
            assert "is it the URL of a running andon server? Pass --url" in said
            assert "named its task" not in said and said.count("\n") == 1

    (tmp_path / "mymod.py").write_text("import andon\n\nagent = andon.Agent(name='mine')\n")
    misspelt = subprocess.run(
        [ANDON, "serve", "mymod:agnet"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert misspelt.returncode == 2
    assert "mymod has no attribute 'agnet' (its agents: agent)" in misspelt.stderr
    missing = subprocess.run(
        [ANDON, "serve", "mymdo:agent"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2 and "no module named 'mymdo' here" in missing.stderr


def test_an_agent_error_names_what_was_raised(tmp_path: Path) -> None:
    skilled = Path(__file__).resolve().parent / "agents" / "skilled.py"
    with AndonServer(tmp_path, str(skilled)) as served:
        crashed = run("send", "--url", served.url, "--skill", "crash", "x")
        assert crashed.returncode == 1
        assert (
            "✗ failed after" in crashed.stderr
            and "the agent raised KeyError: 'missing' (the server's log has the traceback)"
            in crashed.stderr
        )


ONLY_03 = """
from andon import Agent
from andon.agents.demo import agent as demo

agent = Agent(name="old", skills=list(demo.skills), a2a_versions=("0.3",))
"""


def test_token_and_version_errors(tmp_path: Path) -> None:
    (tmp_path / "old_agent.py").write_text(ONLY_03)
    with AndonServer(
        tmp_path,
        "old_agent:agent",
        "--auth",
        "tokens",
        env={"ANDON_TOKENS": "alice user s3cret-token"},
        token="s3cret-token",
        version="0.3",
    ) as served:
        anonymous = run("send", "--url", served.url, "echo hi")
        assert anonymous.returncode == 2
        assert "--token" in anonymous.stderr and "ANDON_TOKEN" in anonymous.stderr
        wrong = run("send", "--url", served.url, "--token", "nope", "echo hi")
        assert wrong.returncode == 2 and "refused the token" in wrong.stderr
        mismatch = run("send", "--url", served.url, "echo hi", env={"ANDON_TOKEN": "s3cret-token"})
        assert mismatch.returncode == 2
        assert "version mismatch" in mismatch.stderr and "--a2a-version 0.3" in mismatch.stderr
        assert mismatch.stderr.count("\n") == 1
        spoken = run(
            "send",
            "--url",
            served.url,
            "--a2a-version",
            "0.3",
            "echo hi",
            env={"ANDON_TOKEN": "s3cret-token"},
        )
        assert (spoken.returncode, spoken.stdout) == (0, "hi")

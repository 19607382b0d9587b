"""Every command shown in README.md and docs/ is run, so the documents cannot drift from
the code.

- `console` blocks are sessions: each `$ command` runs in a terminal (a pty) against a
  real `andon serve`, typing what the session shows typed (Ctrl+C as `^C`, an answer
  after `> `, a confirmation after `[y/N]: `), and its output must have the shape of
  the one recorded: the same lines in order, where ids, numbers and durations may
  differ, `…` stands for anything, and an id seen once stays the same id afterwards.
  A curl's JSON answer must hold every key and every constant the recorded one shows.
- `sh` blocks are instructions without recorded output (servers, other machines): each
  `andon` command in them must be accepted as written by the command's parser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import ANDON, Terminal
from tests.test_client import AndonServer, free_port

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOCUMENTED_URL = "http://127.0.0.1:8000"
DOCUMENTED_HOME = "/home/me/andon"  # where the README's `make run` was recorded

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
TOKEN = re.compile(
    r"(?P<id>[0-9a-f]{32})|(?P<hex>[0-9a-f]{8}(?=…))|(?P<gap>…)|(?P<spin>[⠀-⣿])"
    r"|(?P<rule>─+)|(?P<spaces> {2,})|(?P<dur>\d+(?:\.\d+)?(?: (?:ms|s)\b)?)"
)
JSON_KEY = re.compile(r'"([^"\s]+)":')
JSON_CONSTANT = re.compile(r'"([A-Z][A-Z_]{3,})"')


@dataclass
class Command:
    line: str
    output: list[str] = field(default_factory=list)


def blocks(language: str) -> list[tuple[str, str]]:
    """(where, text) of every fenced block in that language."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{document.relative_to(REPO)}:{line}", match.group(2)))
    return found


def commands(session: str) -> list[Command]:
    """The `$ ` commands of a console block (continued over lines while a quote is open
    or a line ends in a backslash), each with the output recorded under it."""
    parsed: list[Command] = []
    lines = session.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("$ "):
            text = line[2:]
            while i < len(lines) and (text.endswith("\\") or not _complete(text)):
                # A backslash joins the lines; an open quote keeps the line break.
                joint = "" if text.endswith("\\") else "\n"
                text = text.removesuffix("\\") + joint + lines[i]
                i += 1
            parsed.append(Command(text))
        elif line.strip() and parsed:
            parsed[-1].output.append(line)
    return parsed


def _complete(text: str) -> bool:
    try:
        shlex.split(text)
    except ValueError:
        return False
    return True


class Shape:
    """The recorded output of one command as patterns, and the ids it has seen."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids  # documented id -> the id the real run gave it
        self._groups: dict[str, str] = {}

    def pattern(self, line: str) -> str:
        line = line.split("←")[0].rstrip()  # an annotation of the recording
        parts = []
        last = 0
        self._groups = {}
        for token in TOKEN.finditer(line):
            parts.append(re.escape(line[last : token.start()]))
            last = token.end()
            kind, text = token.lastgroup, token.group()
            if kind == "id":
                if text in self.ids:
                    parts.append(re.escape(self.ids[text]))
                elif text in self._groups:
                    parts.append(f"(?P={self._groups[text]})")
                else:
                    self._groups[text] = f"g{len(self._groups)}"
                    parts.append(f"(?P<{self._groups[text]}>[0-9a-f]{{32}})")
            elif kind == "hex":
                parts.append("[0-9a-f]{8}")
            elif kind == "gap":
                parts.append(".*?")
            elif kind == "spin":
                parts.append("[⠀-⣿]")
            elif kind == "rule":
                parts.append("─+")
            elif kind == "spaces":
                parts.append(" +")
            elif token.group().endswith("s"):
                parts.append(r"\d+(?:\.\d+)? (?:ms|s)")
            else:
                parts.append(r"\d+(?:\.\d+)?")
        parts.append(re.escape(line[last:]))
        return "".join(parts)

    def learn(self, found: re.Match[str]) -> None:
        for documented, group in self._groups.items():
            self.ids.setdefault(documented, found.group(group))


@dataclass
class Session:
    """Runs a console block's commands, one after the other, in a terminal."""

    where: str
    env: dict[str, str]
    rewrite: dict[str, str]
    server: AndonServer | None = None
    cwd: Path = REPO
    normalize: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    last_code: int | None = None

    def run(self, command: Command) -> None:
        if command.line == "echo $?":
            assert command.output == [str(self.last_code)], f"{self.where}: $ {command.line}"
            return
        self._settle()
        line = command.line
        for documented, actual in {**self.rewrite, **self.ids}.items():
            line = line.replace(documented, actual)
        terminal = Terminal("-c", line, env=self.env, program="bash", cwd=self.cwd)
        try:
            if line.startswith("curl "):
                self.last_code = terminal.wait(60)
                self._same_json(command, terminal.text)
            else:
                self._follow(command, terminal)
                self.last_code = terminal.wait(60)
        finally:
            terminal.close()

    def _settle(self) -> None:
        """A person types slower than tasks start: none is left `submitted`."""
        if self.server is None:
            return
        deadline = time.monotonic() + 15
        while any(t.status.state.value == "submitted" for t in self.server.client.list().tasks):
            assert time.monotonic() < deadline, "a task never started"
            time.sleep(0.02)

    def _shown(self, terminal: Terminal) -> str:
        text = terminal.text
        for actual, documented in self.normalize.items():
            text = text.replace(actual, documented)
        return text

    def _follow(self, command: Command, terminal: Terminal) -> None:
        shape = Shape(self.ids)
        position = 0
        for recorded in command.output:
            expected = recorded
            if recorded.startswith("^C"):  # Ctrl+C, typed once what comes before is shown
                terminal.ctrl_c()
                expected = recorded[2:]
            elif recorded.startswith("> "):  # an answer typed at the prompt
                position = self._wait(terminal, re.compile("> "), position).start()
                terminal.type(recorded[2:].encode() + b"\r")
            elif "[y/N]: " in recorded:  # a confirmation
                question, answer = recorded.split("[y/N]: ")
                found = self._wait(
                    terminal, re.compile(shape.pattern(question + "[y/N]: ")), position
                )
                shape.learn(found)
                position = found.end()
                terminal.type(answer.encode() + b"\r")
                continue
            found = self._wait(terminal, re.compile(shape.pattern(expected)), position)
            shape.learn(found)
            position = found.end()

    def _wait(self, terminal: Terminal, pattern: re.Pattern[str], start: int) -> re.Match[str]:
        """The pattern, once shown after `start` (the command may go on running)."""
        deadline = time.monotonic() + 30
        while True:
            done = terminal.proc.poll() is not None or time.monotonic() > deadline
            if done:
                terminal.wait(5)
            found = pattern.search(self._shown(terminal), start)
            if found:
                return found
            assert not done, (
                f"{self.where}: not shown: {pattern.pattern!r}\nshown:\n"
                f"{self._shown(terminal)[start:]}"
            )
            time.sleep(0.01)

    def _same_json(self, command: Command, shown: str) -> None:
        recorded = "\n".join(command.output)
        answer = json.loads(shown)
        keys, constants = _keys_and_strings(answer)
        assert set(JSON_KEY.findall(recorded)) <= keys, (self.where, recorded, shown)
        assert set(JSON_CONSTANT.findall(recorded)) <= constants, (self.where, recorded, shown)
        documented = list(dict.fromkeys(re.findall(r"[0-9a-f]{32}", recorded)))
        actual = list(dict.fromkeys(re.findall(r"[0-9a-f]{32}", shown)))
        for doc_id, real_id in zip(documented, actual, strict=False):
            self.ids.setdefault(doc_id, real_id)


def _keys_and_strings(value: Any) -> tuple[set[str], set[str]]:
    keys: set[str] = set()
    strings: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys.update(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            strings.add(item)
    return keys, strings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("docs")) as served:
        yield served


def environment(url: str) -> dict[str, str]:
    return {"ANDON_URL": url, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


SESSIONS = blocks("console")


@pytest.mark.parametrize(("where", "block"), SESSIONS, ids=[w for w, _ in SESSIONS])
def test_console_sessions_run_as_recorded(
    where: str, block: str, server: AndonServer, tmp_path: Path
) -> None:
    steps = commands(block)
    assert steps, f"{where}: no command"
    if steps[0].line == "make run":
        port = free_port()
        session = Session(
            where,
            env=environment(f"http://127.0.0.1:{port}"),
            rewrite={
                "make run": f"make --no-print-directory run ARGS='--port {port} "
                f"--db {tmp_path}/andon.db'"
            },
            normalize={
                f"http://127.0.0.1:{port}": DOCUMENTED_URL,
                f"--url {DOCUMENTED_URL} ": "",
                str(tmp_path): DOCUMENTED_HOME,
            },
        )
    else:
        host = f"127.0.0.1:{server.port}"
        session = Session(
            where,
            env=environment(server.url),
            rewrite={"localhost:8000": host, "127.0.0.1:8000": host},
            server=server,
            cwd=tmp_path,
        )
    for step in steps:
        session.run(step)


INSTRUCTIONS = [
    (f"{where} {line.strip()[:40]}", line)
    for where, block in blocks("sh")
    for line in block.replace("\\\n", " ").splitlines()
    if re.match(r"^(\w+=\S+ +)*andon ", line.split("#")[0].strip())
]


@pytest.mark.parametrize(("where", "line"), INSTRUCTIONS, ids=[w for w, _ in INSTRUCTIONS])
def test_andon_commands_in_instructions_are_accepted_as_written(where: str, line: str) -> None:
    words = shlex.split(line.split(" #")[0])
    while words[0] != "andon":
        words.pop(0)  # VARIABLE=value before the command
    checked = subprocess.run(
        [ANDON, *words[1:], "--help"], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, f"{where}: {line}\n{checked.stderr}"

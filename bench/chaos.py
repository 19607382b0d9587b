"""Chaos: rounds of load on andon, each ended by `kill -9` at a random moment, then
restarts and checks:

    python -m bench.chaos [--mode embedded|distributed] [--rounds 10] [--tasks 200] [--seed 1]

`embedded`: one `andon serve` on SQLite, killed (its whole process group) every round.
`distributed`: one API process (`andon serve --no-worker`) and two workers (`andon
worker --lease 5`) on a PostgreSQL database of the run's own (`--postgres`, the server's
URL; the database is dropped at the end); every round kills one of them, the API
process one time in three, a worker (just its pid, as the OOM killer would) otherwise,
and starts it again at the next round. Both serve with `--auth tokens` (alice and bob).

Each round submits up to `--tasks` tasks (sleep, spin, shell sleep, stream, echo, ask;
alice's and bob's), cancels a third of them while they run, and kills between 0.5 and
3 s in. After the last round every task must end (none stuck: a minute with no task
ending while some have not; a question left waiting is cancelled), and:

- no task lost (every id a submit answered is stored) or double-ended (at most one
  final event, last in its log);
- no process of a task alive (each shell command carries a marker looked for in /proc);
- nothing of alice's readable by bob (listing, GetTask).

Prints the counts and exits 1 on any violation.
"""

from __future__ import annotations

import abc
import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.http import HEADERS, message, rpc
from bench.peers.launch import free_port

TOKENS = {"alice": "alice-chaos-token", "bob": "bob-chaos-token"}
WORK = ["sleep 2", "spin 2", "shell sleep 3; echo {marker}", "stream 20", "echo hi", "ask who?"]
ENDED = ("TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED")
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
STALL = 60.0
"""Seconds without any task ending after which the tasks left are stuck."""
# One final event at most, and none after it: the same query on both stores.
FINALS = (
    "SELECT task_id, count(*) FILTER (WHERE final), max(seq),"
    " max(seq) FILTER (WHERE final) FROM {events} GROUP BY task_id"
)


def call(http: httpx.Client, who: str, method: str, params: dict[str, object]) -> dict[str, Any]:
    """A JSON-RPC call as `who`."""
    headers = {**HEADERS, "Authorization": f"Bearer {TOKENS[who]}"}
    reply: dict[str, Any] = http.post(
        "/", json=rpc(method, params), headers=headers, timeout=30
    ).json()
    return reply


class Andon(abc.ABC):
    """The processes under test: started, killed, started again."""

    def __init__(self, folder: Path, db: str) -> None:
        self.folder = folder
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "andon", *args, "--db", self.db, "--log-level", "error"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "andon.log").open("ab"),
            start_new_session=True,
        )

    def serve(self, *args: str) -> subprocess.Popen[bytes]:
        """`andon serve` with tokens on the run's port; returns once it answers."""
        proc = self.spawn(
            *("serve", "--port", str(self.port), "--auth", "tokens"),
            *("--tokens", str(self.folder / "tokens"), "--drain", "0", *args),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError((self.folder / "andon.log").read_text()[-2000:])
            time.sleep(0.05)
        raise TimeoutError("andon serve did not start")

    @abc.abstractmethod
    def up(self) -> None:
        """Start what is not running."""

    @abc.abstractmethod
    def kill(self, rng: random.Random) -> None:
        """kill -9 one process (or process group) of it."""

    @abc.abstractmethod
    def down(self) -> None:
        """Stop what runs (SIGTERM)."""

    @abc.abstractmethod
    def stored(self, owners: dict[str, str]) -> list[str]:
        """What the store shows wrong: tasks lost or ended twice."""

    @staticmethod
    def check(
        ids: set[str], finals: Iterable[tuple[str, int, int, int | None]], owners: dict[str, str]
    ) -> list[str]:
        found = [f"task {t} lost" for t in owners if t not in ids]
        for task_id, count, last, final_seq in finals:
            if count > 1:
                found.append(f"task {task_id} ended {count} times")
            elif count == 1 and final_seq != last:
                found.append(f"task {task_id} has events after its final one")
        return found


class Embedded(Andon):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, str(folder / "chaos.db"))
        self.server: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        if self.server is None:
            self.server = self.serve()

    def kill(self, rng: random.Random) -> None:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait()
        self.server = None

    def down(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(30)
            self.server = None

    def stored(self, owners: dict[str, str]) -> list[str]:
        with sqlite3.connect(self.db) as db:
            ids = {row[0] for row in db.execute("SELECT id FROM tasks")}
            return self.check(ids, db.execute(FINALS.format(events="events")), owners)


class Distributed(Andon):
    WORKERS = 2

    def __init__(self, folder: Path, postgres: str) -> None:
        self.postgres = postgres
        self.database = f"andon_chaos_{os.getpid()}"
        with psycopg.connect(f"{postgres}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {self.database}")
        super().__init__(folder, f"{postgres}/{self.database}")
        subprocess.run(
            [sys.executable, "-m", "andon", "db", "upgrade", "--db", self.db],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def up(self) -> None:
        while len(self.workers) < self.WORKERS:
            self.workers.append(
                self.spawn("worker", "--concurrency", "32", "--lease", "5", "--drain", "0")
            )
        if self.api is None:
            self.api = self.serve("--no-worker", "--lease", "5")

    def kill(self, rng: random.Random) -> None:
        if rng.random() < 1 / 3:
            assert self.api is not None
            self.api.kill()
            self.api.wait()
            self.api = None
        else:
            worker = self.workers.pop(rng.randrange(len(self.workers)))
            worker.kill()
            worker.wait()

    def down(self) -> None:
        running = [*self.workers, *([self.api] if self.api else [])]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            proc.wait(60)
        self.workers, self.api = [], None

    def stored(self, owners: dict[str, str]) -> list[str]:
        with psycopg.connect(self.db) as db:
            ids = {row[0] for row in db.execute("SELECT id FROM andon_tasks")}
            return self.check(ids, db.execute(FINALS.format(events="andon_events")), owners)

    def drop(self) -> None:
        with psycopg.connect(f"{self.postgres}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def marked_processes(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def run(mode: str, rounds: int, tasks: int, seed: int, postgres: str = POSTGRES) -> list[str]:
    """The problems found (none when every check holds); prints the counts."""
    rng = random.Random(seed)
    marker = f"chaos-{os.getpid()}-{seed}"
    owners: dict[str, str] = {}
    ends: Counter[str] = Counter()
    problems: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "tokens").write_text("".join(f"{w} user {t}\n" for w, t in TOKENS.items()))
        (folder / "tokens").chmod(0o600)
        andon = Embedded(folder) if mode == "embedded" else Distributed(folder, postgres)
        try:
            with httpx.Client(base_url=andon.url) as http:
                for _ in range(rounds):
                    andon.up()
                    load(http, rng, marker, owners, tasks, time.monotonic() + rng.uniform(0.5, 3))
                    andon.kill(rng)
                andon.up()
                try:
                    problems += settle(http, owners, ends)
                    problems += leaks(http, owners)
                finally:
                    andon.down()
            problems += andon.stored(owners)
        finally:
            if isinstance(andon, Distributed):
                andon.drop()
        alive = marked_processes(marker)
        if alive:
            problems.append(f"processes of tasks alive: {alive}")
    print(
        f"{mode}: {rounds} rounds, {len(owners)} tasks, {rounds} kill -9: "
        f"{len(problems)} problem(s) in {time.monotonic() - started:.0f} s"
    )
    print("  ended: " + ", ".join(f"{n} {how}" for how, n in ends.most_common()))
    for problem in problems[:20]:
        print("  " + problem)
    return problems


def load(
    http: httpx.Client,
    rng: random.Random,
    marker: str,
    owners: dict[str, str],
    tasks: int,
    until: float,
) -> None:
    """Submit (and cancel some of) up to `tasks` tasks until the moment of the kill."""
    submitted = 0
    while time.monotonic() < until and submitted < tasks:
        who = rng.choice(list(TOKENS))
        text = rng.choice(WORK).format(marker=marker)
        params = {**message(text), "configuration": {"returnImmediately": True}}
        try:
            task = call(http, who, "SendMessage", params).get("result", {}).get("task")
            if task:
                owners[task["id"]] = who
                submitted += 1
                if rng.random() < 0.3:
                    cancel = {"id": task["id"], "metadata": {"andon.wait": 0}}
                    call(http, who, "CancelTask", cancel)
        except httpx.TransportError:
            continue


def settle(http: httpx.Client, owners: dict[str, str], ends: Counter[str]) -> list[str]:
    """Every task ends after the last restart (input-required ones are cancelled). The
    backlog the rounds left may take minutes to run: a task is stuck when it has not
    ended and no task has for `STALL` seconds. Counts how they ended in `ends` (state,
    and the reason where there is one)."""
    pending = dict(owners)
    moved = time.monotonic()
    while pending and time.monotonic() - moved < STALL:
        for task_id, who in list(pending.items()):
            task = call(http, who, "GetTask", {"id": task_id})["result"]
            state = task["status"]["state"]
            if state == "TASK_STATE_INPUT_REQUIRED":
                call(http, who, "CancelTask", {"id": task_id})
            elif state in ENDED:
                reason = (task.get("metadata") or {}).get("andon.reason")
                how = state.removeprefix("TASK_STATE_").lower()
                ends[how + (f" ({reason})" if reason else "")] += 1
                del pending[task_id]
                moved = time.monotonic()
        time.sleep(0.2)
    return [f"task {t} never ended" for t in pending]


def leaks(http: httpx.Client, owners: dict[str, str]) -> list[str]:
    found = []
    for who in TOKENS:
        other = next(w for w in TOKENS if w != who)
        listed = call(http, who, "ListTasks", {"pageSize": 100})["result"]["tasks"]
        found += [
            f"{who} lists {t['id']} of {other}" for t in listed if owners.get(t["id"]) == other
        ]
        for task_id in [t for t, w in owners.items() if w == other][:50]:
            if "error" not in call(http, who, "GetTask", {"id": task_id}):
                found.append(f"{who} reads {task_id} of {other}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("embedded", "distributed"), default="embedded")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=POSTGRES, help="the PostgreSQL server's URL")
    args = parser.parse_args()
    sys.exit(1 if run(args.mode, args.rounds, args.tasks, args.seed, args.postgres) else 0)


if __name__ == "__main__":
    main()

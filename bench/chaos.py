"""Chaos, embedded mode: rounds of load on `andon serve` (SQLite, --auth tokens, two
principals), each ended by `kill -9` of the server at a random moment, then a restart
and checks:

    python -m bench.chaos [--rounds 10] [--tasks 200] [--seed 1]

Each round submits `--tasks` tasks (sleep, spin, shell sleep, stream, echo, ask, fail;
alice's and bob's), cancels some of them while they run, and kills the server between
0.5 and 3 s in. After the restart every task must end (none stuck), and at the end:

- no task lost (every id a submit answered is stored) or double-ended (at most one
  final event, last in its log);
- no process of a task alive (each shell command carries a marker looked for in /proc);
- nothing of alice's readable by bob (listing, GetTask).

Prints the counts and exits 1 on any violation. Distributed mode is not covered yet.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.peers.launch import free_port

HEADERS = {"A2A-Version": "1.0"}
TOKENS = {"alice": "alice-chaos-token", "bob": "bob-chaos-token"}
WORK = ["sleep 2", "spin 2", "shell sleep 3; echo {marker}", "stream 20", "echo hi", "ask who?"]


def rpc(http: httpx.Client, who: str, method: str, params: dict[str, object]) -> dict[str, object]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {**HEADERS, "Authorization": f"Bearer {TOKENS[who]}"}
    reply: dict[str, object] = http.post("/", json=body, headers=headers, timeout=30).json()
    return reply


def start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "andon", "serve", "--port", str(port)),
            *("--db", str(folder / "chaos.db"), "--auth", "tokens"),
            *("--tokens", str(folder / "tokens"), "--log-level", "error", "--drain", "0"),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "serve.log").open("ab"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError((folder / "serve.log").read_text()[-2000:])
        time.sleep(0.05)
    raise TimeoutError("andon serve did not start")


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


def run(rounds: int, tasks: int, seed: int) -> int:
    rng = random.Random(seed)
    marker = f"chaos-{os.getpid()}-{seed}"
    owners: dict[str, str] = {}
    problems: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "tokens").write_text("".join(f"{w} user {t}\n" for w, t in TOKENS.items()))
        (folder / "tokens").chmod(0o600)
        port = free_port()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(rounds):
                server = start(folder, port)
                kill_at = time.monotonic() + rng.uniform(0.5, 3.0)
                submitted = 0
                while time.monotonic() < kill_at and submitted < tasks:
                    who = rng.choice(list(TOKENS))
                    text = rng.choice(WORK).format(marker=marker)
                    message = {"messageId": os.urandom(8).hex(), "role": "ROLE_USER"}
                    params = {
                        "message": {**message, "parts": [{"text": text}]},
                        "configuration": {"returnImmediately": True},
                    }
                    try:
                        reply = rpc(http, who, "SendMessage", params)
                    except httpx.TransportError:
                        continue
                    task = reply.get("result", {}).get("task")  # type: ignore[union-attr]
                    if task:
                        owners[task["id"]] = who
                        submitted += 1
                        if rng.random() < 0.3:
                            rpc(
                                http,
                                who,
                                "CancelTask",
                                {"id": task["id"], "metadata": {"andon.wait": 0}},
                            )
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            server = start(folder, port)
            try:
                problems += settle(http, owners)
                problems += leaks(http, owners)
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
        problems += stored(folder / "chaos.db", owners)
        alive = marked_processes(marker)
        if alive:
            problems.append(f"processes of tasks alive: {alive}")
    print(
        f"{rounds} rounds, {len(owners)} tasks, {rounds} kill -9 of the server: "
        f"{len(problems)} problem(s) in {time.monotonic() - started:.0f} s"
    )
    for problem in problems[:20]:
        print("  " + problem)
    return 1 if problems else 0


def settle(http: httpx.Client, owners: dict[str, str]) -> list[str]:
    """Every task ends after the last restart (input-required ones are cancelled)."""
    deadline = time.monotonic() + 60
    pending = dict(owners)
    while pending and time.monotonic() < deadline:
        for task_id, who in list(pending.items()):
            state = rpc(http, who, "GetTask", {"id": task_id})["result"]["status"]["state"]  # type: ignore[index]
            if state == "TASK_STATE_INPUT_REQUIRED":
                rpc(http, who, "CancelTask", {"id": task_id})
            elif state in ("TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED"):
                del pending[task_id]
        time.sleep(0.2)
    return [f"task {t} never ended" for t in pending]


def leaks(http: httpx.Client, owners: dict[str, str]) -> list[str]:
    found = []
    for who in TOKENS:
        other = next(w for w in TOKENS if w != who)
        listed = rpc(http, who, "ListTasks", {"pageSize": 100})["result"]["tasks"]  # type: ignore[index]
        found += [
            f"{who} lists {t['id']} of {other}" for t in listed if owners.get(t["id"]) == other
        ]
        for task_id in [t for t, w in owners.items() if w == other][:50]:
            if "error" not in rpc(http, who, "GetTask", {"id": task_id}):
                found.append(f"{who} reads {task_id} of {other}")
    return found


def stored(path: Path, owners: dict[str, str]) -> list[str]:
    found = []
    with sqlite3.connect(path) as db:
        ids = {row[0] for row in db.execute("SELECT id FROM tasks")}
        found += [f"task {t} lost" for t in owners if t not in ids]
        for task_id, finals, last, final_seq in db.execute(
            "SELECT task_id, sum(final), max(seq), max(CASE WHEN final THEN seq END)"
            " FROM events GROUP BY task_id"
        ):
            if finals > 1:
                found.append(f"task {task_id} ended {finals} times")
            elif finals == 1 and final_seq != last:
                found.append(f"task {task_id} has events after its final one")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(run(args.rounds, args.tasks, args.seed))


if __name__ == "__main__":
    main()

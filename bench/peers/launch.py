"""Start and stop the servers of the side-by-side benchmark: andon and its peers.

    from bench.peers.launch import start, stop
    proc = start("bindu", 8002, "/tmp/trace")   # returns once the agent card answers
    ...
    stop(proc)

    python bench/peers/launch.py a2a-sdk --port 8001 --trace /tmp/trace   # by hand

`start` makes sure a peer's virtual environment exists (bench/peers/setup_envs.py)
and runs the peer's server in it (andon runs as `python -m andon serve` with the
interpreter running this module, whose environment must have andon installed), in a
session of its own, on 127.0.0.1:<port> with ANDON_DEMO_TRACE=<trace_path>, and polls
the agent card until it answers or the deadline passes. `stop` ends the whole process
group (SIGTERM, a grace period, then SIGKILL), which also ends any `shell` child a
cancel left behind. Standard library only, so any interpreter can drive it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from . import setup_envs
else:  # run as a script: python bench/peers/launch.py
    import setup_envs

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
LOGS = HERE.parent / ".venvs" / "logs"


@dataclass(frozen=True)
class Peer:
    name: str
    script: Path | None  # None: andon itself
    card_path: str
    rpc_path: str
    protocol: str  # what the JSON-RPC endpoint speaks, for the harness's client
    venv: str = ""  # the virtual environment it runs in (default: its name)


PEERS = {
    "andon": Peer("andon", None, "/.well-known/agent-card.json", "/", "1.0+0.3"),
    "a2a-sdk": Peer(
        "a2a-sdk", HERE / "a2a_sdk_server.py", "/.well-known/agent-card.json", "/", "1.0+0.3"
    ),
    "bindu": Peer("bindu", HERE / "bindu_server.py", "/.well-known/agent.json", "/", "0.3"),
    # bench/llm.py: one streamed chat completion per task, with the openai client.
    "a2a-sdk-llm": Peer(
        "a2a-sdk-llm",
        HERE / "a2a_sdk_llm_server.py",
        "/.well-known/agent-card.json",
        "/",
        "1.0+0.3",
        venv="a2a-sdk",
    ),
    # bench/llm.py: LangGraph's dev server; its API, not A2A, at /threads/... (card: /ok).
    "langgraph-dev": Peer(
        "langgraph-dev", HERE / "langgraph_dev_server.py", "/ok", "/", "langgraph-api"
    ),
    # bench/llm.py: a pydantic-ai agent through FastA2A, an Agents SDK agent on a2a-sdk.
    "fasta2a-pydantic-ai": Peer(
        "fasta2a-pydantic-ai",
        HERE / "fasta2a_pydantic_ai_server.py",
        "/.well-known/agent-card.json",
        "/",
        "0.3",
        venv="fasta2a",
    ),
    "a2a-sdk-agents": Peer(
        "a2a-sdk-agents",
        HERE / "a2a_sdk_agents_server.py",
        "/.well-known/agent-card.json",
        "/",
        "1.0+0.3",
    ),
}


def command(
    peer: str,
    port: int,
    args: list[str] | tuple[str, ...] = (),
    python: str | None = None,
    python_args: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The server's command line; `args` are extra options of that server. andon runs
    on `python` (default: this interpreter), with `python_args` before `-m andon`."""
    spec = PEERS[peer]
    if spec.script is None:
        interpreter = python or sys.executable
        return [interpreter, *python_args, "-m", "andon", "serve", "--port", str(port), *args]
    return [str(setup_envs.ensure(spec.venv or peer)), str(spec.script), "--port", str(port), *args]


def card_url(peer: str, port: int) -> str:
    return f"http://{HOST}:{port}{PEERS[peer].card_path}"


def rpc_url(peer: str, port: int) -> str:
    return f"http://{HOST}:{port}{PEERS[peer].rpc_path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start(
    peer: str,
    port: int,
    trace_path: str | os.PathLike[str],
    *,
    deadline: float = 90.0,
    log_path: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    cpus: str | None = None,
    args: list[str] | tuple[str, ...] = (),
    python: str | None = None,
    python_args: list[str] | tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start `peer` on 127.0.0.1:`port` and wait until its agent card answers.

    `cpus` (e.g. "0") pins the server with `taskset -c`; `args` are passed on to it;
    `python` and `python_args` choose andon's interpreter and its options (`command`).
    The server's output goes to `log_path` (default
    bench/.venvs/logs/<peer>-<port>.log); `proc.log_path` says where. Raises
    RuntimeError if the server exits, TimeoutError past `deadline` seconds (first start
    of Bindu takes ~5 s: it imports a lot and makes DID keys).
    """
    argv = command(peer, port, args, python, python_args)
    log = Path(log_path) if log_path else LOGS / f"{peer}-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    setup_envs.VENVS.mkdir(parents=True, exist_ok=True)  # the servers' working folder
    child_env = {**os.environ, **(env or {})}
    child_env["ANDON_DEMO_TRACE"] = os.path.abspath(trace_path)
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.pop("PYTHONPATH", None)  # the peer's venv only, never andon's
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=setup_envs.VENVS,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.log_path = log  # type: ignore[attr-defined]
    try:
        _wait_ready(proc, card_url(peer, port), deadline, log)
    except BaseException:
        stop(proc)
        raise
    return proc


def _wait_ready(proc: subprocess.Popen[bytes], url: str, deadline: float, log: Path) -> None:
    end = time.monotonic() + deadline
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}; see {log}")
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"{url} did not answer within {deadline} s; see {log}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """End the server and everything it started (its process group)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children left in the group (a cancelled task's `sh`) outlive the leader's exit.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode if proc.returncode is not None else -signal.SIGKILL


def main() -> None:
    parser = argparse.ArgumentParser(description="Start a peer server and wait for Ctrl+C.")
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--trace", default="/tmp/andon-peer-trace", help="ANDON_DEMO_TRACE")
    parser.add_argument("--cpus", default=None, help="pin the server with taskset -c CPUS")
    args = parser.parse_args()
    port = args.port or free_port()

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Also when started in the background (SIGINT ignored) or ended with SIGTERM.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    t0 = time.perf_counter()
    proc = start(args.peer, port, args.trace, cpus=args.cpus)
    print(
        f"{args.peer} ready in {time.perf_counter() - t0:.1f} s (pid {proc.pid})\n"
        f"  card: {card_url(args.peer, port)}\n"
        f"  rpc:  {rpc_url(args.peer, port)} (A2A {PEERS[args.peer].protocol})\n"
        f"  trace: {args.trace}\n  log: {getattr(proc, 'log_path', '')}\n"
        "Ctrl+C stops it.",
        flush=True,
    )
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(proc)


if __name__ == "__main__":
    main()

"""`andon serve` and `andon worker` refuse what they cannot use — another process on the
same SQLite file, a file that is no store, an option out of range — in one line saying
what to do, with exit code 2, and start nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_serve import send, start, state_of

ANDON = [sys.executable, "-m", "andon"]


def refused(args: list[str], cwd: Path) -> str:
    """Run an andon command that must refuse to start: its one line of stderr."""
    done = subprocess.run([*ANDON, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_second_process_on_a_sqlite_store_in_use_is_refused(tmp_path: Path) -> None:
    first, url = start(tmp_path)
    try:
        running = send(url, "sleep 30")
        said = refused(["serve", "--port", "0", "--db", str(tmp_path / "serve.db")], tmp_path)
        assert f"pid {first.pid}" in said and "in use" in said
        # The first server's task was left alone: still running, still cancellable.
        assert state_of(url, running) == "TASK_STATE_WORKING"
    finally:
        first.kill()
        first.wait()
    # The kernel dropped the lock with the killed process: the file can be used again.
    second, url = start(tmp_path)
    try:
        assert state_of(url, running) == "TASK_STATE_FAILED"  # worker_lost, by the restart
    finally:
        second.kill()
        second.wait()


def make_file(tmp_path: Path, kind: str) -> str:
    if kind == "text":
        (tmp_path / "notes.db").write_text("just some notes\n" * 100)
        return "notes.db"
    if kind == "truncated":
        with sqlite3.connect(tmp_path / "full.db") as db:
            db.execute("CREATE TABLE t (x)")
            db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
        (tmp_path / "cut.db").write_bytes((tmp_path / "full.db").read_bytes()[:3000])
        return "cut.db"
    if kind == "newer":
        with sqlite3.connect(tmp_path / "newer.db") as db:
            db.execute("PRAGMA user_version=99")
        return "newer.db"
    if kind == "directory":
        (tmp_path / "adir").mkdir()
        return "adir"
    return {"missing directory": "no/such/dir/x.db", "empty": "", "uri": "file:x.db"}[kind]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing directory", "does not exist"),
        ("directory", "is a directory"),
        ("text", "not a SQLite database"),
        ("truncated", "not a SQLite database"),
        ("newer", "newer than this andon"),
        ("empty", "--db is empty"),
        ("uri", "sqlite:///"),
    ],
)
def test_a_db_that_cannot_be_a_store_is_refused_in_one_line(
    tmp_path: Path, kind: str, words: str
) -> None:
    db = make_file(tmp_path, kind)
    before = {p.name for p in tmp_path.iterdir()}
    said = refused(["serve", "--port", "0", "--db", db], tmp_path)
    assert words in said
    # Nothing written but the lock file, when the check went as far as taking it.
    assert {p.name for p in tmp_path.iterdir()} - before <= {f"{db}.lock"}


@pytest.mark.postgres
def test_a_postgres_database_that_does_not_exist_is_refused_at_once(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/andon_no_such_database"
    for command in ("serve", "worker"):
        said = refused([command, "--db", url], tmp_path)
        assert "does not exist" in said and "andon db upgrade" in said


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "--port", "70000"], "--port must be from 0 to 65535, not 70000"),
        (["serve", "--drain", "inf"], "--drain must be at least 0, and finite, not inf"),
        (["serve", "--max-concurrent", "0"], "--max-concurrent must be at least 1, not 0"),
        (["serve", "--cancel-wait", "-1"], "--cancel-wait must be at least 0"),
        (
            ["serve", "--cancel-wait", "nan"],
            "--cancel-wait must be at least 0, and finite, not nan",
        ),
        (["serve", "--lease", "0"], "--lease must be more than 0"),
        (["serve", "--workers", "-2"], "--workers must be at least 0"),
        (["worker", "--db", "postgresql://x@127.0.0.1/y", "--concurrency", "0"], "--concurrency"),
        (["worker", "--db", "postgresql://x@127.0.0.1/y", "--drain", "nan"], "--drain"),
    ],
)
def test_an_option_out_of_range_is_refused_in_one_line(
    tmp_path: Path, args: list[str], words: str
) -> None:
    if args[0] == "serve":
        args = [*args, "--db", "andon.db"]
    assert words in refused(args, tmp_path)
    assert not (tmp_path / "andon.db").exists()

"""Tokens as a careful operator expects them: files anyone may write refused, tokens
given twice or too short refused, names `andon token new` checks, expiry, and SIGHUP
reading the file again without a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from andon.server.auth import TokenAuth, digest
from tests.test_client import AndonServer, eventually
from tests.test_startup_checks import refused

ANDON = [sys.executable, "-m", "andon"]


def status(server: AndonServer, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "A2A-Version": "1.0"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    return httpx.post(server.url, json=body, headers=headers, timeout=10).status_code


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("alice user one-token-a\nbob user one-token-a", "line 2: the same token as line 1"),
        (
            f"alice user sha256:{digest('x' * 20)}\nbob admin {'x' * 20}",
            "line 2: the same token as line 1",
        ),
        ("alice user x", "a token of 1 characters is easy to guess"),
        ("alice,smith user long-enough-token", "line 1: expected"),
        ("alice user sha256:abc", "64 hex digits"),
        ("alice user long-enough-token until=soon", "not ISO 8601"),
        ("al!ce user long-enough-token", "cannot name a principal"),
    ],
)
def test_a_tokens_source_an_operator_would_not_want_is_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TokenAuth.parse(text)


def test_a_token_past_its_expiry_is_refused() -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    auth = TokenAuth.parse(
        f"old user old-token-1 until={past}\nnew user new-token-1 until=2999-01-01"
    )
    assert auth.authenticate("Bearer old-token-1") is None
    principal = auth.authenticate("Bearer new-token-1")
    assert principal is not None and principal.name == "new"


def test_a_world_writable_tokens_file_is_refused_and_a_readable_one_warned(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice user long-enough-token\n")
    tokens.chmod(0o666)
    said = refused(["serve", "--port", "0", "--auth", "tokens", "--tokens", str(tokens)], tmp_path)
    assert "writable by every user" in said and f"chmod o-w {tokens}" in said
    tokens.chmod(0o644)
    auth = TokenAuth.from_file(tokens)
    assert any("chmod o-r" in warning for warning in auth.warnings)
    tokens.write_text(f"alice user sha256:{digest('long-enough-token')}\n")
    assert TokenAuth.from_file(tokens).warnings == []  # digests only: nothing to read


@pytest.mark.parametrize("name", ["alice smith", "a,b", "", "#root"])
def test_token_new_refuses_a_name_the_tokens_file_could_not_hold(tmp_path: Path, name: str) -> None:
    assert "cannot name a principal" in refused(["token", "new", name], tmp_path)


def test_token_new_with_days_prints_a_line_that_expires(tmp_path: Path) -> None:
    made = subprocess.run(
        [*ANDON, "token", "new", "alice", "--days", "30"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    token = made.split("token: ")[1].split()[0]
    line = made.split("tokens file line: ")[1].strip()
    grant = TokenAuth.parse(line).grants[digest(token)]
    assert grant.until is not None
    assert 29 * 86400 < grant.until - time.time() <= 30 * 86400


def test_sighup_reads_the_tokens_file_again(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice user alice-token-1\n")
    tokens.chmod(0o600)
    with AndonServer(tmp_path, "--auth", "tokens", "--tokens", str(tokens)) as server:
        assert status(server, "alice-token-1") == 200
        assert status(server, "bob-token-22") == 401
        tokens.write_text("bob user bob-token-22\n")
        server.proc.send_signal(signal.SIGHUP)
        eventually(lambda: status(server, "bob-token-22") == 200, 10, "bob's token taken")
        assert status(server, "alice-token-1") == 401  # removed from the file: gone
        # A file that no longer parses keeps the tokens as they were.
        tokens.write_text("bob user x\n")
        server.proc.send_signal(signal.SIGHUP)
        eventually(lambda: "tokens not reloaded" in server.logged(), 10, "the reload refused")
        assert status(server, "bob-token-22") == 200
        assert server.proc.poll() is None

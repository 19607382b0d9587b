"""A lifeline for the process groups a worker starts: if the worker dies without ending
them itself (SIGKILL, the OOM killer, a crash), a small keeper process ends them.

Every command an attempt runs has a process group of its own, so it is not killed with
its parent, and belongs to its attempt's cell (andon.runtime.containment), which holds
its descendants too. The worker tells the keeper through a pipe, which only the worker
can write to, each group and each cell it starts and each it has ended. However the
worker dies, the kernel closes its end of the pipe; the keeper reads end-of-file and
sends everything still listed SIGTERM, then SIGKILL after the grace.

The keeper runs in a session of its own, so a signal to the worker's terminal or process
group does not take it down before it has done its job. It starts with the first thing
held, not with the worker: a server whose agents have run no command yet has nothing
to end, and a second interpreter idle beside it is 10 MiB.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("andon.runtime")
KEEPER = Path(__file__).with_name("keeper.py")


class Lifeline:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._held: set[str] = set()
        self._keeper: subprocess.Popen[bytes] | None = None
        self._open = False

    def __enter__(self) -> Lifeline:
        self._open = True  # the keeper itself starts with the first hold
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        self._open = True
        self._keeper = subprocess.Popen(
            # As a script, not a module of the package: the keeper imports no andon.
            [sys.executable, "-E", "-s", str(KEEPER), str(self.grace)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        for item in self._held:
            self._send(f"+{item}\n")

    def hold(self, item: str) -> None:
        """Something was started: the keeper ends it if this process dies first. `item`
        is `g<pgid>` (a process group), `e<key>` (the processes carrying an attempt's
        key) or `c<path>` (a cgroup); see andon.runtime.keeper.Held."""
        self._held.add(item)
        if self._keeper is None and self._open:
            self.start()  # tells it everything held, this item included
        else:
            self._send(f"+{item}\n")

    def release(self, item: str) -> None:
        """It has ended (or is no longer this process's to end)."""
        if item in self._held:
            self._held.discard(item)
            self._send(f"-{item}\n")

    def close(self, timeout: float = 5.0) -> None:
        """Let the keeper go: it ends what is still listed (normally nothing) and exits."""
        self._open = False
        keeper, self._keeper = self._keeper, None
        if keeper is None:
            return
        assert keeper.stdin is not None
        keeper.stdin.close()
        try:
            keeper.wait(timeout)
        except subprocess.TimeoutExpired:
            keeper.kill()

    def _send(self, line: str) -> None:
        keeper = self._keeper
        if keeper is None:
            return
        assert keeper.stdin is not None
        try:
            # A few bytes into a pipe the keeper drains: this does not block.
            os.write(keeper.stdin.fileno(), line.encode())
        except OSError as exc:  # the keeper died: start another, tell it everything
            log.error("process-group keeper %d is gone (%s); starting another", keeper.pid, exc)
            keeper.stdin.close()
            keeper.wait()
            self.start()

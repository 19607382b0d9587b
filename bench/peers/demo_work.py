"""The demo agent's work, shared by the peer servers (standard library only).

Each peer runs in its own virtual environment with its own Python, so this module
imports nothing from andon or from any peer framework, except andon's trace writer
(standard library only), which it loads by its file path. It holds only what must be
identical everywhere for the benchmark to compare like with like: how the text is read,
the 0.1 s step, the trace lines (andon/agents/trace.py), and the CPU-bound loop that
`spin` runs in a thread.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

STEP = 0.1
COMMANDS = ("echo", "sleep", "spin", "shell")


def _andon_trace() -> Callable[[str, int], None]:
    """andon's own trace writer (andon/agents/trace.py, standard library only), loaded
    by its path: the peers' environments do not have andon installed."""
    path = Path(__file__).resolve().parents[2] / "andon" / "agents" / "trace.py"
    spec = importlib.util.spec_from_file_location("andon_demo_trace", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    writer: Callable[[str, int], None] = module.trace
    return writer


trace = _andon_trace()
"""Append `<task id> <step> <monotonic ns>` to $ANDON_DEMO_TRACE, if set."""


def parse(text: str) -> tuple[str, str]:
    """Split the user's text into its first word and the rest."""
    command, _, rest = text.strip().partition(" ")
    return command, rest.strip()


def seconds(rest: str, default: float = 1.0) -> float:
    value = float(rest) if rest else default
    if value < 0:
        raise ValueError("expected a number >= 0")
    return value


def steps(total_seconds: float) -> int:
    return round(total_seconds / STEP)


def spin(task_id: str, total_seconds: float) -> int:
    """Busy CPU work, meant to run in a thread; a trace line every 0.1 s.

    Nothing here can notice a cancel: that is the point of the measurement. It is
    the loop a typical author hands to `asyncio.to_thread`.
    """
    end = time.monotonic() + total_seconds
    step = 0
    next_mark = time.monotonic() + STEP
    while time.monotonic() < end:
        sum(i * i for i in range(2000))
        if time.monotonic() >= next_mark:
            trace(task_id, step)
            step += 1
            next_mark += STEP
    return step

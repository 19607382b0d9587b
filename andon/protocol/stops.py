"""How a cancel's stop is told to people: the same words in the task's status message,
the CLI and the web page (andon/server/ui/tasks.js says them in JavaScript)."""

from __future__ import annotations

from typing import Any

STOP_MS = "andon.stopMs"
KILLED = "andon.killed"
"""The processes that outlived the grace and were SIGKILLed, each with its command."""
KILL_GRACE = "andon.killGrace"
SURVIVORS = "andon.survivors"


def for_people(seconds: float) -> str:
    """0.55 ms, 4.4 ms, 21 ms, 2.0 s, 12 s: two or three significant digits."""
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.2g} ms" if ms < 1 else f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def describe_stop(metadata: dict[str, Any]) -> str | None:
    """`stopped in 2.0 s: 1 process killed after the 2 s grace`, or None without a stop."""
    if STOP_MS not in metadata:
        return None
    words = f"stopped in {for_people(float(metadata[STOP_MS]) / 1000)}"
    killed = metadata.get(KILLED) or []
    if killed:
        count = f"{len(killed)} process{'es' if len(killed) > 1 else ''}"
        grace = metadata.get(KILL_GRACE)
        after = f"after the {float(grace):g} s grace" if grace is not None else "after the grace"
        words += f": {count} killed {after}"
    return words

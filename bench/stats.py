"""Percentiles and table rows shared by the benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def row(name: str, seconds: Sequence[float]) -> str:
    s = summary_ms(seconds)
    return f"| {name} | {s['n']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['max']:.2f} |"

"""The comparison section of docs/BENCHMARKS.md, rendered from bench.compare's figures.

Each cell is the median over the rounds with the lowest and highest round in brackets;
the "x andon" columns divide a peer's median by andon's. States are counted
("canceled x5"). The section sits between two HTML comments, so a new run replaces
it and leaves the rest of the file alone.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import percentile

BEGIN = "<!-- compare:begin (written by bench/compare.py; edits here are overwritten) -->"
END = "<!-- compare:end -->"
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"
LABELS = {"andon": "andon", "a2a-sdk": "a2a-sdk 1.3", "bindu": "Bindu"}


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str = ""  # "ms", "s", "MiB", "KiB", "/s", "" (a count), "state"

    @property
    def ratio(self) -> bool:
        return self.unit not in ("", "state")


def rows(cfg: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    n = cfg["echo"]
    work = f"{cfg['work_seconds']:g} s"
    kinds = {
        "sleep": f"`sleep {cfg['work_seconds']:g}`",
        "spin": f"`spin {cfg['work_seconds']:g}`",
        "shell": f"`shell` loop, {work}",
    }
    kill = [
        row
        for kind, name in kinds.items()
        for row in (
            Row(f"kill.{kind}.cancel_ms", f"{name}: cancel call", "ms"),
            Row(f"kill.{kind}.answer", f"{name}: state in the cancel answer", "state"),
            Row(f"kill.{kind}.lines_after", f"{name}: work lines after the answer"),
            *(
                [Row("kill.shell.survivors", f"{name}: its processes alive at the answer")]
                if kind == "shell"
                else []
            ),
            Row(f"kill.{kind}.state_after", f"{name}: state {work} later", "state"),
        )
    ]
    drop = [
        row
        for kind, name in kinds.items()
        for row in (
            Row(f"drop.{kind}.stop_ms", f"{name}: drop → task `canceled`", "ms"),
            Row(f"drop.{kind}.lines_after", f"{name}: work lines after the drop"),
            *(
                [Row("drop.shell.survivors", f"{name}: its processes alive 0.5 s after")]
                if kind == "shell"
                else []
            ),
            Row(f"drop.{kind}.state_after", f"{name}: state {work} later", "state"),
        )
    ]
    crowd = cfg["crowd"]
    return [
        (
            "Round trips",
            [
                Row("echo_raw.p50", f"`echo` → completed, raw socket, median, n={n}", "ms"),
                Row("echo_raw.p99", "`echo` → completed, raw socket, p99", "ms"),
                Row("echo_raw.rps", "`echo` → completed, raw socket, one connection", "/s"),
                Row("echo_raw.cpu_ms", "`echo` → completed, server CPU time per request", "ms"),
                Row(
                    "echo_httpx.p50",
                    f"`echo` → completed, httpx, median, n={cfg['echo_httpx']}",
                    "ms",
                ),
                Row("echo_httpx.p99", "`echo` → completed, httpx, p99", "ms"),
                Row("echo_httpx.rps", "`echo` → completed, httpx, one connection", "/s"),
                Row("stream.first_ms", "stream `sleep 1`: first event", "ms"),
                Row("stream.final_ms", "stream `sleep 1`: final event", "ms"),
                Row(
                    "cancel.p50", f"cancel call, running `sleep`, median, n={cfg['cancels']}", "ms"
                ),
                Row("cancel.p99", "cancel call, running `sleep`, p99", "ms"),
            ],
        ),
        ("Work after a cancel call", kill),
        ("Stream dropped by the client (andon: `X-Andon-On-Disconnect: cancel`)", drop),
        (
            f"{crowd:,} concurrent streams of `sleep 120`",
            [
                Row(
                    "crowd.admitted",
                    f"streams admitted: first event within {cfg['crowd_deadline']:g} s",
                ),
                Row("crowd.admit_s", "time until all admitted, or the deadline", "s"),
                Row("crowd.admit_cpu_s", "server CPU while admitting", "s"),
                Row("crowd.events_per_s", "events received, all streams together", "/s"),
                Row("crowd.rss_before_mib", "server RSS before", "MiB"),
                Row("crowd.peak_mib", "server RSS, peak", "MiB"),
                Row(
                    "crowd.cancel_all_s",
                    "cancel every admitted task, all at once",
                    "s",
                ),
                Row("crowd.cancel_cpu_s", "server CPU while cancelling", "s"),
                Row("crowd.cancels_answered", "cancel calls answered"),
                Row("crowd.cancels_refused", "cancel calls refused (an HTTP error)"),
                Row("crowd.cancels_per_s", "cancel calls answered per second", "/s"),
                Row("crowd.streams_ended_s", "until every admitted stream ended", "s"),
                Row("crowd.lines_after", "work lines after a task's cancel answer, all tasks"),
            ],
        ),
        (
            f"Memory after {cfg['memory_tasks']:,} `echo` tasks",
            [
                Row("memory.before_mib", "server RSS before, after 50 warm-up tasks", "MiB"),
                Row("memory.after_mib", "server RSS after", "MiB"),
                Row("memory.kib_per_task", "growth per task", "KiB"),
                Row("memory.tasks_per_s", f"throughput, {cfg['connections']} connections", "/s"),
            ],
        ),
    ]


def number(value: float) -> str:
    size = abs(value)
    if size >= 1000 or value == int(value):
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def values(rounds: list[dict[str, Any]], key: str) -> list[Any]:
    return [r.get(key) for r in rounds if key in r]


def median(found: list[Any]) -> float | None:
    numbers = [v for v in found if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(numbers) if numbers else None


def cell(found: list[Any], row: Row) -> str:
    if not found:
        return DASH
    if row.unit == "state":
        counts = Counter(str(v) for v in found)
        return ", ".join(f"{state} {TIMES}{n}" for state, n in counts.most_common())
    numbers = [v for v in found if v is not None]
    if not numbers:
        return "never" if row.unit in ("ms", "s") else DASH
    mid = median(numbers)
    assert mid is not None
    text = number(mid)
    if len(numbers) > 1 and min(numbers) != max(numbers):
        text += f" ({number(min(numbers))}{DASH}{number(max(numbers))})"
    if len(numbers) < len(found):
        text += f", {len(found) - len(numbers)} of {len(found)} never"
    return text


def ratio(peer: list[Any], andon: list[Any]) -> str:
    a, p = median([v for v in andon if v is not None]), median(peer)
    if a is None or p is None or a == 0:
        return ""
    return f"{p / a:.1f}{TIMES}" if p / a < 100 else f"{p / a:,.0f}{TIMES}"


def table(results: dict[str, list[dict[str, Any]]], title: str, spec: list[Row]) -> str:
    names = list(results)
    peers = [n for n in names if n != "andon"]
    with_ratio = "andon" in names
    head = ["measurement"]
    for name in names:
        head.append(LABELS[name])
        if name != "andon" and with_ratio:
            head.append(f"{TIMES} andon")
    lines = [f"#### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in spec:
        unit = f" ({row.unit})" if row.unit and row.unit != "state" else ""
        cells = [row.label + unit]
        for name in names:
            found = values(results[name], row.key)
            cells.append(cell(found, row))
            if name in peers and with_ratio:
                andon = values(results["andon"], row.key)
                cells.append(ratio(found, andon) if row.ratio else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Where andon stands against the targets of issue 8."""
    andon = results.get("andon")
    if not andon:
        return []
    out = []
    echo = median(values(andon, "echo_raw.p50"))
    peers = {n: median(values(r, "echo_raw.p50")) for n, r in results.items() if n != "andon"}
    fastest = min((v for v in peers.values() if v is not None), default=None)
    if echo is not None:
        line = f"- `echo` round trip, raw client, task durably stored: median {number(echo)} ms"
        line += " (target ≤ 0.3 ms: " + ("met" if echo <= 0.3 else "not met") + ")"
        if fastest is not None:
            ratio = fastest / echo
            line += f"; the faster peer takes {ratio:.1f}{TIMES} as long"
            line += f" (target at least 4{TIMES}: {'met' if ratio >= 4 else 'not met'})"
        out.append(line + ".")
    pooled = [ms for r in andon for ms in r.get("cancel.samples_ms", [])]
    if pooled:
        p99 = percentile(pooled, 99)
        out.append(
            f"- cancel call p99: {number(p99)} ms over all {len(pooled)} cancels of the run"
            f" (target < 10 ms: {'met' if p99 < 10 else 'not met'})."
        )
    worst = {name: _worst_work(rounds) for name, rounds in results.items()}
    if worst["andon"] is not None:
        lines, processes = worst["andon"]
        text = (
            "- work after a cancel call (sleep, spin and shell), worst round: "
            f"trace lines {lines}, shell processes alive {processes}"
            f" (target 0: {'met' if lines == processes == 0 else 'not met'})"
        )
        peers = [
            f"{LABELS[n]} {w[0]} and {w[1]}"
            for n, w in worst.items()
            if n != "andon" and w is not None
        ]
        out.append(text + (f"; {', '.join(peers)}." if peers else "."))
    peak = median(values(andon, "crowd.peak_mib"))
    others = {n: median(values(r, "crowd.peak_mib")) for n, r in results.items() if n != "andon"}
    if peak is not None and others:
        admitted = {n: median(values(r, "crowd.admitted")) for n, r in results.items()}
        # Only a peer that held as many streams is a fair comparison.
        alike = {
            n: v for n, v in others.items() if v is not None and admitted[n] == admitted["andon"]
        }
        shown = ", ".join(
            f"{LABELS[n]} {number(v)} MiB ({number(admitted[n] or 0)} streams admitted)"
            for n, v in others.items()
            if v is not None
        )
        verdict = "no peer held as many streams"
        if alike:
            lower = all(peak < v for v in alike.values())
            against = " and ".join(LABELS[n] for n in alike)
            verdict = f"{'met' if lower else 'not met'} against {against}"
            if len(alike) < len(others):
                verdict += "; the others held fewer streams"
        out.append(
            f"- peak RSS with the crowd of streams: {number(peak)} MiB"
            f" ({number(admitted['andon'] or 0)} streams admitted) against {shown}"
            f" (target lower than both: {verdict})."
        )
    return out


def _worst_work(rounds: list[dict[str, Any]]) -> tuple[int, int] | None:
    """The most trace lines and shell processes a cancel left running, in any round."""
    found = [(k, v) for r in rounds for k, v in r.items() if k.startswith("kill.")]
    lines = [v for k, v in found if k.endswith(".lines_after")]
    processes = [v for k, v in found if k.endswith(".survivors")]
    return (max(lines), max(processes, default=0)) if lines else None


def render(record: dict[str, Any]) -> str:
    info = record["machine"]
    results = record["results"]
    cfg = info["config"]
    versions = "; ".join(
        f"{name} {v.split()[1]} on Python {v.split()[0]}" for name, v in info["versions"].items()
    )
    load = "/".join(f"{x:.1f}" for x in info["load_before"])
    load_after = "/".join(f"{x:.1f}" for x in info["load_after"])
    parts = [
        BEGIN,
        "## Side by side: andon, a2a-sdk and Bindu (issue 8)",
        "",
        "```",
        info["command"],
        "```",
        "",
        f"- Run: {info['started']}, {info['minutes']:.0f} min, "
        f"rounds: {cfg['rounds']}; "
        f"load average before {load}, after {load_after}."
        + (f" {info['note']}" if info["note"] else ""),
        f"- Machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_gib']} GiB, "
        f"Linux {info['kernel']}; {versions}.",
        f"- Pinning: {info['pinning']}; the same for every server.",
        "- Servers run with their defaults (bench/peers/README.md), each started afresh for "
        "each group of measurements (round trips and cancels; the crowd; memory); andon with "
        "its SQLite store (every event committed before it is answered or streamed) and "
        "`--max-concurrent 1000` so that the crowd runs at once as it does on a2a-sdk.",
        f"- Each cell: median over the rounds (lowest{DASH}highest round); {TIMES} andon = the "
        "peer's median / andon's. Server CPU time is that of the server's process tree "
        "(user + system), a figure that other load on the machine disturbs less than "
        "latency. Bindu's `message/send` answers before the work is done, "
        "so its `echo` round trip is `message/send` then `tasks/get` polled back to back "
        "until `completed`.",
        f"- The crowd: {cfg['crowd']:,} streams of `sleep 120` opened at once (each task "
        "emits a progress event every 0.1 s), then, after "
        f"{cfg['crowd_settle']:g} s, every admitted task's cancel sent at once, each on its "
        "own connection. RSS is summed over the server's process tree, sampled every 0.1 s.",
        "",
    ]
    for title, spec in rows(cfg):
        parts += [table(results, title, spec), ""]
    goals = targets(results)
    if goals:
        parts += ["#### andon against the targets of issue 8", "", *goals, ""]
    parts.append(END)
    return "\n".join(parts)


def write_section(path: Path, section: str) -> None:
    """Put the section in place of the previous one, or at the end of the file."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)

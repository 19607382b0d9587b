"""The side-by-side benchmark still runs: `bench.compare --quick` against andon alone;
so does `bench.llm --quick` (andon's servings only).

Nothing here is timed; it checks that every measurement produced its figures, that the
comparison section replaced nothing else in the file, and the behaviour andon promises
(every cancelled or dropped task ends `canceled`, with no work after it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import BEGIN, END

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("sleep", "spin", "shell")


def test_quick_compare_against_andon(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## In process\n\nkeep this\n")
    figures = tmp_path / "figures.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "--quick",
            "--servers",
            "andon",
            "--out",
            str(out),
            "--json",
            str(figures),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=240,
    )
    record = json.loads(figures.read_text())
    (rounds,) = record["results"]["andon"]
    for key in (
        "echo_raw.p50",
        "echo_httpx.p99",
        "stream.final_ms",
        "cancel.p99",
        "crowd.peak_mib",
        "crowd.cancel_all_s",
        "memory.after_mib",
    ):
        assert isinstance(rounds[key], float), key
    crowd = record["machine"]["config"]["crowd"]
    assert rounds["crowd.admitted"] == rounds["crowd.cancels_answered"] == crowd
    assert rounds["crowd.lines_after"] == rounds["crowd.cancels_refused"] == 0
    for kind in KINDS:
        assert rounds[f"kill.{kind}.answer"] == "canceled"
        assert rounds[f"kill.{kind}.state_after"] == "canceled"
        assert rounds[f"kill.{kind}.lines_after"] == 0
        # A step may still land between the drop and the server noticing it, so the
        # lines after a drop are a figure, not an invariant; the ending is.
        assert rounds[f"drop.{kind}.state_after"] == "canceled"
        assert rounds[f"drop.{kind}.stop_ms"] is not None
    assert rounds["kill.shell.survivors"] == rounds["drop.shell.survivors"] == 0

    text = out.read_text()
    assert text.startswith("# Benchmarks\n\n## In process\n\nkeep this\n")
    assert text.count(BEGIN) == text.count(END) == 1
    assert "| measurement | andon |" in text
    assert "andon against the targets of issue 8" in text


def test_quick_llm_bench_against_andon(tmp_path: Path) -> None:
    figures = tmp_path / "llm.json"
    servings = "andon.llm (andon),openai client on ctx.http (andon)"
    command = [sys.executable, "-m", "bench.llm", "--quick", "--servings", servings]
    subprocess.run(
        [*command, "--streams", "1,5", "--json", str(figures)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    record = json.loads(figures.read_text())
    for name in servings.split(","):
        cancels = record["cancels"][name]
        assert cancels["n"] == cancels["canceled"] == cancels["model_saw_disconnect"] == 10
    assert [s["streams"] for s in record["streams"]] == [1, 5]
    for figures_of in record["streams"]:
        assert figures_of["failed_or_short"] == 0
        assert figures_of["tokens"] == figures_of["streams"] * figures_of["tokens_per_stream"]
        assert figures_of["cpu_us_per_token"] > 0 and figures_of["follower_ms_p99"] is not None


def test_the_delegation_benchmark_runs() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bench.delegation", "--n", "1", "--children", "1,2"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    rows = [
        line for line in shown.splitlines() if line.startswith("| 1 child") or "2 children" in line
    ]
    assert len(rows) == 2, shown

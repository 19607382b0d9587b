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


def test_the_peers_load_andons_trace_writer_without_andon(tmp_path: Path) -> None:
    """The peers' environments have no andon: their shared module loads andon's trace
    writer by its path, which works only while that file needs nothing but the standard
    library (-I -S: no site-packages, so no andon and no third-party package)."""
    trace = tmp_path / "trace"
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'bench' / 'peers')!r}); "
        "import demo_work; demo_work.trace('peer', 7); "
        "assert not [m for m in sys.modules if m.startswith('andon')], 'andon was imported'"
    )
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        cwd=tmp_path,
        env={"ANDON_DEMO_TRACE": str(trace)},
        check=True,
        timeout=60,
    )
    assert trace.read_text().split()[:2] == ["peer", "7"]

"""A short run of the chaos command, both modes: kill -9 at random moments under load,
restarts, then the checks of `bench.chaos` (no task stuck, lost or ended twice; no
process of a task alive; nothing of one principal readable by the other). The long runs
and their figures are in docs/HARDENING.md."""

from __future__ import annotations

import pytest

from bench import chaos
from tests.conftest import POSTGRES_SERVER


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_kill_9_under_load_loses_nothing_and_leaves_nothing_running(mode: str) -> None:
    assert chaos.run(mode, rounds=3, tasks=40, seed=5, postgres=POSTGRES_SERVER) == []

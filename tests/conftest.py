from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from andon import RuntimeSettings, ServiceSettings, TaskService, open_service
from andon.agents.demo import agent as demo_agent

FAST_RUNTIME = dict(kill_grace=0.5, hard_deadline=2.0, graceful_period=2.0, cleanup_budget=1.0)


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "trace.log"
    monkeypatch.setenv("ANDON_DEMO_TRACE", str(path))
    return path


@pytest.fixture
def runtime_settings(tmp_path: Path) -> RuntimeSettings:
    return RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)


@pytest.fixture
def service_settings() -> ServiceSettings:
    return ServiceSettings()


@pytest.fixture
async def service(
    tmp_path: Path,
    trace: Path,
    runtime_settings: RuntimeSettings,
    service_settings: ServiceSettings,
) -> AsyncIterator[TaskService]:
    async with open_service(
        demo_agent,
        str(tmp_path / "andon.sqlite"),
        runtime=runtime_settings,
        settings=service_settings,
    ) as svc:
        yield svc

"""The web page at `/`, driven in Debian's Chromium through Playwright against a real
`andon serve`: chat, live progress, cancel, questions, reloads, dropped connections,
tokens. `make test` installs Chromium when it is missing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright

from tests.test_client import AndonServer, steady

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
WAIT_MS = 15_000  # a loaded machine runs 7 test suites at once: seconds, not milliseconds
OBSERVE = 0.5  # five demo steps: long enough to see work that did not stop


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        "Chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("ui")) as served:
        yield served


class Session:
    """One browser tab with its own storage, remembering what the page asked for and
    any error it raised."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.set_default_timeout(WAIT_MS)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[Request] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.goto(url)

    def send(self, text: str) -> str:
        """Types a message, sends it with Enter; the id of the task it started."""
        before = self.page.locator(".entry").count()
        self.page.get_by_label("Message to the agent").fill(text)
        self.page.get_by_label("Message to the agent").press("Enter")
        entry = self.page.locator(".entry").nth(before)
        expect(entry).to_be_attached()
        task_id = entry.get_attribute("data-task-id")
        assert task_id
        return task_id

    def entry(self, task_id: str) -> Locator:
        return self.page.locator(f'.entry[data-task-id="{task_id}"]')

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"the page raised: {self.errors}"


@pytest.fixture
def sessions(browser: Browser) -> Iterator[list[Session]]:
    opened: list[Session] = []
    yield opened
    for session in opened:
        session.close()


def open_page(sessions: list[Session], browser: Browser, url: str) -> Session:
    session = Session(browser, url)
    sessions.append(session)
    return session


def cancel_via_api(server: AndonServer, *task_ids: str) -> None:
    for task_id in task_ids:
        if not server.client.get(task_id).status.state.terminal:
            server.client.cancel(task_id)


# -- the page -------------------------------------------------------------------------


def test_the_page_is_served_at_root_and_loads_nothing_from_elsewhere(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    page_response = httpx.get(server.url + "/")
    assert page_response.status_code == 200
    assert page_response.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page_response.headers["content-security-policy"]
    # POST / is still JSON-RPC.
    rpc = httpx.post(
        server.url + "/",
        json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}},
        headers={"A2A-Version": "1.0"},
    )
    assert "tasks" in rpc.json()["result"]

    tab = open_page(sessions, browser, server.url + "/")
    expect(tab.page.locator("#agent-name")).to_have_text("andon demo")
    task_id = tab.send("echo hello from the page")
    expect(tab.entry(task_id)).to_have_attribute("data-state", "completed")
    expect(tab.entry(task_id).locator(".response")).to_have_text("hello from the page")
    assert {request.url.split("/")[2] for request in tab.requests} == {server.url.split("/")[2]}


# -- cancel -----------------------------------------------------------------------------


def test_cancel_in_the_page_stops_the_work_and_says_why(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    task_id = tab.send("sleep 30")
    entry = tab.entry(task_id)
    expect(entry.locator(".status")).to_contain_text("/300")  # progress arrives
    expect(entry.locator(".badge")).to_have_text("working")

    entry.get_by_role("button", name="Cancel task: sleep 30").click()
    dialog = tab.page.get_by_role("dialog")
    expect(dialog).to_contain_text("Cancel “sleep 30”?")
    clicked = time.monotonic()
    dialog.get_by_role("button", name="Cancel task").click()
    expect(entry).to_have_attribute("data-state", "canceled")
    shown_ns = time.monotonic_ns()
    seen_after = time.monotonic() - clicked
    expect(entry.locator(".badge")).to_have_text("canceled")
    expect(entry.locator(".outcome")).to_contain_text("reason: user")
    expect(entry.locator(".outcome")).to_contain_text(" ms")  # how long the stop took
    expect(entry.get_by_role("button", name="Cancel task: sleep 30")).to_be_hidden()

    # The work stopped before the page said so, and stays stopped.
    steady(lambda: len(server.trace(task_id)), OBSERVE)
    late = [line for line in server.trace(task_id) if int(line.split()[2]) > shown_ns]
    assert late == [], f"work went on after the page showed canceled: {late}"
    task = server.client.get(task_id)
    assert task.status.state.value == "canceled"
    assert (task.metadata or {})["andon.reason"] == "user"
    print(f"click to canceled shown: {seen_after * 1000:.0f} ms")

    # The screenshot for the README: a running task beside the canceled one.
    running = tab.send("sleep 30")
    expect(tab.entry(running).locator(".status")).to_contain_text("/300")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "ui.png"))
    cancel_via_api(server, running)
    expect(tab.entry(running)).to_have_attribute("data-state", "canceled")

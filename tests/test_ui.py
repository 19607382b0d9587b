"""The web page at `/`, driven in Debian's Chromium through Playwright against a real
`andon serve`: chat, live progress, cancel, questions, reloads, dropped connections,
tokens, keyboard and contrast."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright

from andon.protocol.stops import describe_stop
from tests.chromium import launch
from tests.test_client import AndonServer, Proxy, steady
from tests.test_skills import SKILLED

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
WAIT_MS = 15_000  # a loaded machine runs 7 test suites at once: seconds, not milliseconds
expect.set_options(timeout=WAIT_MS)
OBSERVE = 0.5  # five demo steps: long enough to see work that did not stop


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
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
        tasks = self.page.locator(".entry[data-task-id]")
        before = tasks.count()
        self.page.get_by_label("Message to the agent").fill(text)
        self.page.get_by_label("Message to the agent").press("Enter")
        entry = tasks.nth(before)
        expect(entry).to_be_attached()
        task_id = entry.get_attribute("data-task-id")
        assert task_id
        return task_id

    def send_unaccepted(self, text: str) -> None:
        """Types a message and sends it, expecting the server to refuse it."""
        self.page.get_by_label("Message to the agent").fill(text)
        self.page.get_by_label("Message to the agent").press("Enter")

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
    expect(tab.page.get_by_label("Skill")).to_be_hidden()  # one skill: nothing to pick
    assert {request.url.split("/")[2] for request in tab.requests} == {server.url.split("/")[2]}


def test_the_skill_picker_lists_the_cards_skills_and_chooses_the_skill(
    browser: Browser, sessions: list[Session], tmp_path: Path
) -> None:
    with AndonServer(tmp_path, str(SKILLED)) as skilled:
        tab = open_page(sessions, browser, skilled.url + "/")
        picker = tab.page.get_by_label("Skill")
        expect(picker.locator("option")).to_have_text(
            ["Greeting (greet)", "Shouting (shout)", "wait", "crash"]
        )
        expect(tab.page.locator("#examples .example")).to_have_text(["Ada"])
        picker.select_option("shout")
        expect(tab.page.locator("#skill-description")).to_have_text("Repeats the text in capitals")
        expect(tab.page.locator("#examples .example")).to_have_text(["quiet please"])
        shouted = tab.send("hi there")
        expect(tab.entry(shouted).locator(".response")).to_have_text("shout: HI THERE")
        picker.select_option("greet")
        greeted = tab.send("Ada")
        expect(tab.entry(greeted).locator(".response")).to_have_text("greet: hello Ada")
        stored = skilled.client.get(shouted)
        assert (stored.metadata or {})["andon.skill"] == "shout"


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
    expect(tab.entry(running).locator(".status")).to_have_text(re.compile(r"step \d\d+/300"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "ui.png"))
    cancel_via_api(server, running)
    expect(tab.entry(running)).to_have_attribute("data-state", "canceled")


def test_a_slow_stop_shows_canceling_then_canceled_and_tool_output_folds(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    # The shell and its sleep ignore SIGTERM: the stop waits for the kill grace (2 s).
    task_id = tab.send("shell echo started; trap '' TERM; sleep 30")
    entry = tab.entry(task_id)
    output = entry.locator("details.tool", has_text="output")
    expect(output.locator("pre")).to_have_text("started\n")
    elapsed = entry.locator(".elapsed").inner_text()
    expect(entry.locator(".elapsed")).not_to_have_text(elapsed)  # the clock runs
    output.locator("summary").click()  # tool output folds away
    expect(output.locator("pre")).to_be_hidden()

    entry.get_by_role("button", name="Cancel task").click()
    tab.page.get_by_role("dialog").get_by_role("button", name="Cancel task").click()
    expect(entry.locator(".badge")).to_have_text("canceling…")
    expect(entry.get_by_role("button", name="Cancel task")).to_be_hidden()
    expect(entry.locator(".badge")).to_have_text("canceled")
    stopped = entry.locator(".outcome")
    expect(stopped).to_contain_text("reason: user")
    metadata = server.client.get(task_id).metadata or {}
    assert metadata["andon.killed"], "the group should have needed SIGKILL after the grace"
    words = describe_stop(metadata)
    assert words is not None and "1 process killed after the" in words
    expect(stopped).to_contain_text(words)
    expect(output.locator("pre")).to_be_hidden()  # still folded


def test_cancel_all_running_of_a_conversation_and_the_state_filter(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    first = tab.send("sleep 30")
    second = tab.send("spin 30")
    done = tab.send("echo already done")
    for task_id in (first, second):
        expect(tab.entry(task_id).locator(".badge")).to_have_text("working")
    expect(tab.entry(done)).to_have_attribute("data-state", "completed")
    elsewhere = server.client.send("sleep 30", blocking=False)  # another conversation

    tab.page.get_by_role("button", name="Cancel all running").click()
    dialog = tab.page.get_by_role("dialog")
    expect(dialog).to_contain_text("all 2 running tasks")
    dialog.get_by_role("button", name="Cancel all").click()
    for task_id in (first, second):
        expect(tab.entry(task_id)).to_have_attribute("data-state", "canceled")
        expect(tab.entry(task_id).locator(".outcome")).to_contain_text("reason: operator")
    expect(tab.entry(done)).to_have_attribute("data-state", "completed")
    assert server.client.get(elsewhere.id).status.state.value == "working"
    expect(tab.page.get_by_role("button", name="Cancel all running")).to_be_hidden()

    tab.page.get_by_label("Show").select_option("canceled")
    items = tab.page.locator("#task-list li")
    expect(items.first).to_have_attribute("data-state", "canceled")
    expect(tab.page.locator('#task-list li:not([data-state="canceled"])')).to_have_count(0)
    tab.page.get_by_label("Show").select_option("working")
    expect(tab.page.locator(f'#task-list li[data-task-id="{elsewhere.id}"]')).to_be_visible()
    expect(tab.page.locator('#task-list li:not([data-state="working"])')).to_have_count(0)
    cancel_via_api(server, elsewhere.id)


def test_one_conversation_per_context_opened_from_the_task_list(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    first = tab.send("echo in the first conversation")
    again = tab.send("echo still the first")
    first_context = server.client.get(first).context_id
    assert server.client.get(again).context_id == first_context
    tab.page.get_by_role("button", name="New conversation").click()
    expect(tab.page.get_by_label("Message to the agent")).to_be_focused()
    expect(tab.page.locator(".entry")).to_have_count(0)
    other = tab.send("echo in another one")
    assert server.client.get(other).context_id != first_context

    tab.page.locator("#task-list").get_by_role("button", name="echo still the first").click()
    expect(tab.page.locator(".entry")).to_have_count(2)
    expect(tab.entry(again)).to_be_focused()
    expect(tab.entry(other)).to_have_count(0)
    assert tab.page.evaluate("location.hash") == f"#context={first_context}"


# -- questions, reloads, dropped connections ---------------------------------------------


def test_a_question_is_answered_in_the_page(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    task_id = tab.send("ask your name?")
    entry = tab.entry(task_id)
    expect(entry.locator(".badge")).to_have_text("input-required")
    answer = entry.get_by_label("The agent asks: your name?")
    answer.fill("Ada")
    answer.press("Enter")
    expect(entry).to_have_attribute("data-state", "completed")
    expect(entry.locator(".response")).to_have_text("Ada")
    turns = ["You: ask your name?", "Agent asked: your name?", "You: Ada"]
    expect(entry.locator(".turn")).to_have_text(turns)
    expect(entry.get_by_label("The agent asks: your name?")).to_be_hidden()
    task = server.client.get(task_id)
    assert task.status.state.value == "completed"
    assert [m.text for m in task.history or [] if m.role.value == "user"] == [
        "ask your name?",
        "Ada",
    ]


def chunks(count: int) -> str:
    return "".join(f"chunk {i}\n" for i in range(count))


def assert_shown_once(server: AndonServer, tab: Session, task_id: str) -> None:
    """The task (a long `stream`) goes on in the page after what interrupted it; once
    cancelled, the page shows exactly the chunks the server stored, each once."""
    output = tab.entry(task_id).locator(".tool pre")
    expect(output).to_contain_text("chunk 30\n")  # more than came before the interruption
    shown = output.text_content() or ""
    assert shown == chunks(shown.count("chunk")), "a chunk shown twice or missed"
    server.client.cancel(task_id)
    expect(tab.entry(task_id)).to_have_attribute("data-state", "canceled")
    artifacts = server.client.get(task_id).artifacts or []
    stored = "".join(part.text or "" for part in artifacts[0].parts)
    assert stored == chunks(stored.count("chunk"))
    expect(output).to_have_text(stored)


def test_a_reload_in_the_middle_of_a_stream_resumes_it_without_repeats(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    task_id = tab.send("stream 2000")
    expect(tab.entry(task_id).locator(".tool pre")).to_contain_text("chunk 5\n")
    tab.page.reload()
    assert_shown_once(server, tab, task_id)  # the conversation is in the address
    subscribed = [r for r in tab.requests if r.url.endswith(f"/tasks/{task_id}:subscribe")]
    assert subscribed, "the reloaded page did not follow the running task"


def test_a_dropped_stream_resumes_from_the_last_event_id(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    proxy = Proxy(server.port)
    try:
        tab = open_page(sessions, browser, proxy.url + "/")
        task_id = tab.send("stream 2000")
        expect(tab.entry(task_id).locator(".tool pre")).to_contain_text("chunk 5\n")
        proxy.cut()
        assert_shown_once(server, tab, task_id)
    finally:
        proxy.close()
    resumed = [
        r.all_headers().get("last-event-id")
        for r in tab.requests
        if r.url.endswith(f"/tasks/{task_id}:subscribe")
    ]
    assert resumed and all(seq and seq.isdigit() for seq in resumed), resumed


# -- tokens ------------------------------------------------------------------------------


def test_each_principal_sees_only_its_own_tasks(
    browser: Browser, sessions: list[Session], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice user alice-secret\nbob user bob-secret\n")
    with AndonServer(tmp_path, "--auth", "tokens", "--tokens", str(tokens)) as server:
        alice = open_page(sessions, browser, server.url + "/")
        expect(alice.page.get_by_role("alert")).to_contain_text("needs a bearer token")
        alice.page.get_by_label("Bearer token").fill("alice-secret")
        alice.page.get_by_role("button", name="Use token").click()
        expect(alice.page.get_by_role("alert")).to_be_hidden()
        task_id = alice.send("sleep 30")
        expect(alice.entry(task_id).locator(".status")).to_contain_text("/300")
        context_id = alice.page.evaluate("location.hash").removeprefix("#context=")

        bob = open_page(sessions, browser, f"{server.url}/#context={context_id}")
        bob.page.get_by_label("Bearer token").fill("bob-secret")
        bob.page.get_by_role("button", name="Use token").click()
        bob.send("echo mine")
        expect(bob.page.locator("#task-list li")).to_have_count(1)
        expect(bob.page.locator(f'[data-task-id="{task_id}"]')).to_have_count(0)

        alice.page.reload()  # the token is kept for the tab
        expect(alice.page.locator(f'#task-list li[data-task-id="{task_id}"]')).to_be_visible()
        expect(alice.page.locator("#task-list li")).to_have_count(1)
        alice.entry(task_id).get_by_role("button", name="Cancel task: sleep 30").click()
        alice.page.get_by_role("dialog").get_by_role("button", name="Cancel task").click()
        expect(alice.entry(task_id)).to_have_attribute("data-state", "canceled")


def test_the_token_bar_shows_only_when_the_server_asks_for_tokens(
    browser: Browser, sessions: list[Session], server: AndonServer, tmp_path: Path
) -> None:
    open_tab = open_page(sessions, browser, server.url + "/")
    expect(open_tab.page.locator("#agent-name")).to_have_text("andon demo")
    expect(open_tab.page.get_by_label("Bearer token")).to_be_hidden()
    tokens = tmp_path / "tokens"
    tokens.write_text("alice user alice-secret\n")
    with AndonServer(tmp_path, "--auth", "tokens", "--tokens", str(tokens)) as guarded:
        tab = open_page(sessions, browser, guarded.url + "/")
        expect(tab.page.get_by_label("Bearer token")).to_be_visible()


# -- sending when the server is away ------------------------------------------------------


def test_a_message_whose_send_failed_is_kept_with_a_retry(
    browser: Browser, sessions: list[Session], tmp_path: Path
) -> None:
    first = AndonServer(tmp_path)
    with first:
        tab = open_page(sessions, browser, first.url + "/")
        expect(tab.page.locator("#agent-name")).to_have_text("andon demo")
    # The server is stopped: the message cannot be sent.
    box = tab.page.get_by_label("Message to the agent")
    box.fill("echo are you there?")
    box.press("Enter")
    unsent = tab.page.locator(".entry.unsent")
    expect(unsent).to_have_attribute("data-state", "unsent")
    expect(unsent.locator(".turn.user")).to_have_text("You: echo are you there?")
    expect(unsent.locator(".unsent-text")).to_have_text("Not sent: cannot reach the andon server.")
    retry = unsent.get_by_role("button", name="Retry sending: echo are you there?")
    expect(retry).to_be_visible()

    again = AndonServer(tmp_path)
    again.port, again.url = first.port, first.url  # the same server, started again
    with again:
        retry.click()
        entry = tab.page.locator(".entry:not(.unsent)")
        expect(entry).to_have_attribute("data-state", "completed")
        expect(entry.locator(".response")).to_have_text("are you there?")
        expect(tab.page.locator(".entry.unsent")).to_have_count(0)
        (listed,) = again.client.list().tasks
        task = again.client.get(listed.id)
        assert [m.text for m in task.history or []][:1] == ["echo are you there?"]

        # A refused message (an unknown skill) is kept too, and Edit puts it back.
        tab.page.evaluate(
            """() => { const o = document.createElement("option"); o.value = "nope";
                       document.getElementById("skill-select").append(o);
                       document.getElementById("skill-select").value = "nope"; }"""
        )
        tab.send_unaccepted("echo refused")
        expect(unsent.locator(".unsent-text")).to_contain_text("Not sent: unknown skill 'nope'")
        unsent.get_by_role("button", name="Edit").click()
        expect(tab.page.locator(".entry.unsent")).to_have_count(0)
        expect(box).to_have_value("echo refused")
        assert len(again.client.list().tasks) == 1


# -- /docs -------------------------------------------------------------------------------


def test_the_docs_page_is_interactive_offline_and_try_it_sends(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/docs")
    page = tab.page
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("andon demo (andon)")
    operations = {
        path: page.locator(f'.opblock-post:has(.opblock-summary-path[data-path="{path}"])')
        for path in ("/message:send", "/message:stream", "/tasks/{id}:cancel", "/tasks:cancel")
    }
    for operation in operations.values():
        expect(operation.first).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "docs.png"))

    send = operations["/message:send"].first
    send.locator(".opblock-summary").click()
    expect(send.locator(".examples-select")).to_be_visible()  # the request's examples
    send.get_by_role("button", name="Try it out").click()
    send.get_by_role("button", name="Execute").click()
    answer = send.locator(".live-responses-table")
    expect(answer.locator("tr.response .response-col_status")).to_have_text("200")
    expect(answer.locator("tr.response .response-col_description")).to_contain_text(
        "TASK_STATE_COMPLETED"
    )
    expect(answer.locator("tr.response .response-col_description")).to_contain_text(
        '"text": "hello"'
    )
    answer.screenshot(path=str(SCREENSHOTS / "docs-try-it.png"))

    host = server.url.split("/")[2]
    assert {request.url.split("/")[2] for request in tab.requests} == {host}
    assert any(r.url.endswith("/message:send") for r in tab.requests)


# -- layout ------------------------------------------------------------------------------

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll("body *")]
    .filter((n) => n.checkVisibility() && !n.closest(".visually-hidden, .skip"))
    .filter((n) => {
      const box = n.getBoundingClientRect();
      return box.width && box.right > width + 0.5;
    })
    .map((n) => `${n.tagName}.${n.className}: ${Math.round(n.getBoundingClientRect().right)}`);
  return { width, scroll: document.documentElement.scrollWidth, out };
}"""


def test_the_page_fits_420_px_without_overflow(
    browser: Browser, sessions: list[Session], server: AndonServer, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice user alice-secret\n")
    with AndonServer(
        tmp_path, "--auth", "tokens", "--tokens", str(tokens), token="alice-secret"
    ) as guarded:
        for url, token in ((server.url, None), (guarded.url, "alice-secret")):
            tab = open_page(sessions, browser, url + "/")
            tab.page.set_viewport_size({"width": 420, "height": 860})
            if token:
                tab.page.get_by_label("Bearer token").fill(token)
                tab.page.get_by_role("button", name="Use token").click()
                expect(tab.page.get_by_role("button", name="Forget")).to_be_visible()
            running = tab.send("sleep 30")
            done = tab.send("shell echo a long line of tool output to fold and wrap; exit 0")
            expect(tab.entry(running).locator(".status")).to_contain_text("/300")
            expect(tab.entry(done)).to_have_attribute("data-state", "completed")
            found = tab.page.evaluate(OVERFLOW)
            assert found["scroll"] <= found["width"] == 420 and found["out"] == [], found
            if token is None:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                tab.page.screenshot(path=str(SCREENSHOTS / "ui-420.png"))
            cancel_via_api(server if token is None else guarded, running)
            expect(tab.entry(running)).to_have_attribute("data-state", "canceled")


def test_the_task_list_shows_start_times_and_an_own_cancel_is_not_an_error(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    canceled = tab.send("sleep 30")
    failed = tab.send("fail on purpose")
    expect(tab.entry(canceled).locator(".badge")).to_have_text("working")
    server.client.cancel(canceled)
    expect(tab.entry(canceled)).to_have_attribute("data-state", "canceled")
    expect(tab.entry(failed)).to_have_attribute("data-state", "failed")
    created = server.client.get(canceled).metadata["andon.createdAt"]  # type: ignore[index]
    started = tab.page.locator(f'#task-list li[data-task-id="{canceled}"] time.started')
    expect(started).to_have_text(re.compile(r"^\d\d:\d\d:\d\d( [AP]M)? · $"))
    shown_at = started.get_attribute("datetime")
    assert shown_at is not None and abs(_instant(shown_at) - _instant(created)) < 0.001

    def looks(task_id: str) -> dict[str, str]:
        return (
            tab.entry(task_id)
            .locator(".outcome")
            .evaluate(
                "(n) => ({color: getComputedStyle(n).color,"
                " weight: getComputedStyle(n).fontWeight})"
            )
        )

    danger = "rgb(179, 38, 30)"
    assert looks(failed)["color"] == danger
    assert looks(canceled)["color"] != danger and int(looks(canceled)["weight"]) < 600


def _instant(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- accessibility -----------------------------------------------------------------------


CONTRAST = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const colour = rgb(getComputedStyle(node).backgroundColor);
      if (colour.length === 3 || colour[3] > 0) return colour.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const node of document.querySelectorAll("body *")) {
    const texts = [...node.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim());
    if (!node.checkVisibility() || !texts.length) continue;
    const [a, b] = [lum(rgb(getComputedStyle(node).color)), lum(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    found.push([node.tagName + "." + node.className, node.textContent.trim().slice(0, 30), ratio]);
  }
  return found;
}"""


def test_keyboard_labels_and_contrast(
    browser: Browser, sessions: list[Session], server: AndonServer
) -> None:
    tab = open_page(sessions, browser, server.url + "/")
    page = tab.page
    task_id = tab.send("spin 30")  # typed and sent with Enter
    finished = tab.send("fail on purpose")
    entry = tab.entry(task_id)
    expect(entry.locator(".badge")).to_have_text("working")
    expect(tab.entry(finished).locator(".outcome")).to_have_text("failed: on purpose")

    # Every control has a label.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button")]
             .filter((c) => c.checkVisibility())
             .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label")
                            && !c.textContent.trim())
             .map((c) => c.outerHTML)"""
    )
    assert unlabelled == []

    # Cancel from the keyboard: Escape keeps the task, Enter on the confirm stops it.
    cancel = entry.get_by_role("button", name="Cancel task: spin 30")
    cancel.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="Keep running")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(entry.locator(".badge")).to_have_text("working")
    cancel.focus()
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Keep running")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Cancel task")).to_be_focused()
    page.keyboard.press("Enter")
    expect(entry).to_have_attribute("data-state", "canceled")
    expect(entry.locator(".outcome")).to_contain_text("reason: user")

    low = [
        (name, text, round(ratio, 2))
        for name, text, ratio in page.evaluate(CONTRAST)
        if ratio < 4.5
    ]
    assert low == [], f"text under 4.5:1 contrast: {low}"


def test_a_delegating_task_links_its_children_and_a_child_names_its_parent(
    browser: Browser, sessions: list[Session], server: AndonServer, tmp_path: Path
) -> None:
    orchestrator = str(Path(__file__).resolve().parent.parent / "examples" / "orchestrator.py")
    env = {"ANDON_CHILD_URLS": server.url}
    with AndonServer(tmp_path, orchestrator + ":agent", env=env) as parent:
        tab = open_page(sessions, browser, parent.url + "/")
        task_id = tab.send("echo left | echo right")
        entry = tab.entry(task_id)
        expect(entry).to_have_attribute("data-state", "completed")
        kids = (parent.client.get(task_id).metadata or {})["andon.children"]
        links = entry.locator(".lineage a")
        expect(links).to_have_count(2)
        for child in kids:
            link = entry.get_by_role("link", name=f"andon demo · task {child['id'][:8]}")
            href = f"{server.url}/#context={child['contextId']}"
            expect(link).to_have_attribute("href", href)

        # On the child's server, the child's page says which task delegated it.
        child_tab = open_page(sessions, browser, f"{server.url}/#context={kids[0]['contextId']}")
        child_entry = child_tab.entry(kids[0]["id"])
        expect(child_entry.locator(".lineage")).to_contain_text(f"delegated by task {task_id[:8]}")

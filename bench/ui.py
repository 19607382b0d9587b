"""In the web page, in Chromium, against `andon serve`:

    python -m bench.ui [--n 50]

For a `sleep 300` task started from the page and seen working: the time from the click
on the confirmation of its Cancel button to the page showing it `canceled` (the entry's
state changed and the next frame drawn). The server's CancelTask answers once the work
has stopped, so this is what a user waits for a stop they can trust.
"""

from __future__ import annotations

import argparse
import platform
import tempfile

from playwright.sync_api import Page, expect, sync_playwright

from bench.http import free_port, start_server
from bench.stats import row
from tests.chromium import launch

CONFIRM_TO_CANCELED = """(taskId) => new Promise((resolve) => {
  const entry = document.querySelector(`.entry[data-task-id="${taskId}"]`);
  const start = performance.now();
  const observer = new MutationObserver(() => {
    if (entry.dataset.state !== "canceled") return;
    observer.disconnect();
    requestAnimationFrame(() => resolve(performance.now() - start));
  });
  observer.observe(entry, { attributes: true, attributeFilter: ["data-state"] });
  document.getElementById("confirm-yes").click();
})"""


def one_cancel(page: Page) -> float:
    page.get_by_label("Message to the agent").fill("sleep 300")
    page.get_by_label("Message to the agent").press("Enter")
    entry = page.locator(".entry").last
    expect(entry.locator(".status")).to_contain_text("/3000")
    task_id = entry.get_attribute("data-task-id")
    entry.get_by_role("button", name="Cancel task").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    milliseconds = page.evaluate(CONFIRM_TO_CANCELED, task_id)
    expect(entry.locator(".outcome")).to_contain_text("reason: user")
    return float(milliseconds) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = start_server(port, workdir)
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"http://127.0.0.1:{port}/")
                latencies = [one_cancel(page) for _ in range(args.n)]
                version = browser.version
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    print(f"Chromium {version}, Python {platform.python_version()}")
    print("| measurement | n | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    print(row("confirm click → `canceled` shown, sleep", latencies))


if __name__ == "__main__":
    main()

"""The web dashboard in real headless Chromium, on the console mounted in `langgraph dev`.

A module-scoped `langgraph dev` serves the support graph with the console app beside it (its
BASTION_HOME holds the console keys); Playwright drives Debian's Chromium (`/usr/bin/chromium`,
installed by `make test`; nothing is downloaded at run time). Every wait is Playwright's
auto-waiting `expect(...)` with a deadline, never a sleep.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from playwright.sync_api import Browser, Page, expect, sync_playwright
from served import Server, start_server

from console.auth import KeyStore
from graphs.support import format_ticket

pytestmark = [pytest.mark.server, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: no GPU, no sandbox (root in CI), and none of Chromium's own background
# traffic (updates, sync, QUIC probes), which would hang or fail on an offline machine.
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
WAIT_MS = 60_000
"""Deadline of each auto-waiting expectation and action: a resumed run goes through several
nodes, and the page refreshes every few seconds."""
ASSISTANT = "support"
TENANT = "acme"
OTHER_TENANT = "globex"
NOTE = "Loyal customer; the desk is defective."
LARGE_REFUND = format_ticket(
    "carla@example.com",
    "Desk",
    "The standing desk (ORD-1003) is wobbly and unusable. I want a full refund of $640.",
)


@dataclass(frozen=True)
class Console:
    """The served graph and console, and the raw console keys made for the tests."""

    server: Server
    keys: dict[str, str]

    def api(self, path: str, key_name: str, **params: Any) -> Any:
        """GET a console API route as `key_name`; the decoded JSON body."""
        response = httpx.get(
            f"{self.server.url}/bastion/api/{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.keys[key_name]}"},
            timeout=30.0,
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`langgraph dev` with the console; keys: alice (acme), bob (globex), root (admin, all)."""
    home = tmp_path_factory.mktemp("bastion-home")
    store = KeyStore(home / "console-keys.json")
    keys = {
        "alice": store.create("alice", [TENANT], admin=False),
        "bob": store.create("bob", [OTHER_TENANT], admin=False),
        "root": store.create("root", ["*"], admin=True),
    }
    with start_server(home, {}) as server:
        yield Console(server=server, keys=keys)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium; each `launch` gets a fresh temporary profile."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing and could not be installed (`make test` installs Debian's "
            "chromium as root: apt-get install -y chromium); the dashboard tests need it"
        )
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()
            expect.set_options(timeout=None)  # back to Playwright's default


@contextmanager
def dashboard(browser: Browser, console: Console, key: str, shots: Path) -> Iterator[Page]:
    """The dashboard opened with `#key=<key>` in a fresh context (its own sessionStorage);
    on failure, a full-page screenshot lands in `shots` (the path is printed)."""
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{console.server.url}/bastion/#key={key}")
        yield page
    except BaseException:
        shot = shots / "dashboard-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}; server log: {console.server.log}")
        raise
    finally:
        context.close()


def _escalate_large_refund(console: Console) -> str:
    """Start a support run on acme that waits for a human on `issue_refund`; its thread id."""
    client = get_sync_client(url=console.server.url, api_key=None, timeout=60.0)
    thread_id: str = client.threads.create()["thread_id"]
    result = client.runs.wait(
        thread_id,
        ASSISTANT,
        input={"messages": [{"role": "user", "content": LARGE_REFUND}]},
        context={"tenant": TENANT},
    )
    assert isinstance(result, dict) and result.get("__interrupt__"), f"no interrupt: {result!r}"
    return thread_id


def _refunds(db: Path, order_id: str) -> int:
    with sqlite3.connect(db) as conn:
        query = "SELECT COUNT(*) FROM refunds WHERE order_id = ?"
        return int(conn.execute(query, (order_id,)).fetchone()[0])


def _approval_card(page: Page, thread_id: str) -> Any:
    return page.locator(f'[data-testid="approval-card"][data-thread-id="{thread_id}"]')


def _run_row(page: Page, thread_id: str) -> Any:
    return page.locator(f'[data-testid="run-row"][data-thread-id="{thread_id}"]')


def test_a_reviewer_approves_a_refund_by_clicking_and_the_run_resolves(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    db = console.server.home / "support.sqlite"
    thread_id = _escalate_large_refund(console)
    refunds_before = _refunds(db, "ORD-1003")

    with dashboard(browser, console, console.keys["alice"], tmp_path) as page:
        expect(page.get_by_test_id("whoami")).to_contain_text("alice")
        assert "key=" not in page.url  # the key left the address bar (and the history)
        card = _approval_card(page, thread_id)
        expect(card.get_by_test_id("approval-tool")).to_have_text("issue_refund")
        expect(card.get_by_test_id("approval-args")).to_contain_text('"ORD-1003"')
        expect(card.get_by_test_id("approval-tenant")).to_have_text(TENANT)
        row = _run_row(page, thread_id)
        expect(row.get_by_test_id("run-status")).to_have_text("waiting")

        card.get_by_label("Note").fill(NOTE)
        card.get_by_test_id("approve-button").click()

        expect(row.get_by_test_id("run-status")).to_have_text("resolved")
        expect(card).to_have_count(0)
        row.get_by_test_id("run-open").click()
        human = page.get_by_test_id("timeline-human")
        expect(human).to_have_count(1)
        expect(human).to_contain_text("human:alice")
        expect(human).to_contain_text("allow")
        expect(human).to_contain_text(NOTE)
        escalation = page.get_by_test_id("timeline-escalation")
        expect(escalation.first).to_contain_text("issue_refund")

    # The click went all the way: the run issued the refund it was waiting to issue.
    assert _refunds(db, "ORD-1003") == refunds_before + 1


def test_a_wrong_key_shows_the_apis_error_and_hint(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    answer = httpx.get(
        f"{console.server.url}/bastion/api/me",
        headers={"Authorization": "Bearer not-a-key"},
        timeout=30.0,
    )
    assert answer.status_code == 401
    error, hint = answer.json()["error"], answer.json()["hint"]

    with dashboard(browser, console, "not-a-key", tmp_path) as page:
        banner = page.get_by_test_id("error-banner")
        expect(banner).to_be_visible()
        expect(banner.get_by_test_id("error-message")).to_have_text(error)
        expect(banner.get_by_test_id("error-hint")).to_have_text(hint)
        expect(page.get_by_test_id("whoami")).to_have_text("Not signed in")
        expect(page.get_by_test_id("approval-card")).to_have_count(0)


def test_a_key_of_another_tenant_sees_no_approval_card(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    thread_id = _escalate_large_refund(console)
    pending = [a["thread_id"] for a in console.api("approvals", "alice")["approvals"]]
    assert thread_id in pending  # there is a card to see, for acme's reviewers

    with dashboard(browser, console, console.keys["bob"], tmp_path) as page:
        expect(page.get_by_test_id("whoami")).to_contain_text("bob")
        expect(page.get_by_test_id("approvals-empty")).to_be_visible()
        expect(page.get_by_test_id("runs-empty")).to_be_visible()
        expect(page.get_by_test_id("approval-card")).to_have_count(0)
        expect(page.get_by_test_id("run-row")).to_have_count(0)


def test_a_tenant_is_killed_and_lifted_from_the_panel_and_audited(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    with dashboard(browser, console, console.keys["bob"], tmp_path) as page:
        expect(page.get_by_test_id("whoami")).to_contain_text("bob")
        scopes = page.get_by_test_id("kill-scope").locator("option")
        expect(scopes).to_have_text(["Tenant"])  # no global scope for a non-admin key
        expect(page.get_by_test_id("verify-button")).to_be_hidden()

        page.get_by_label("Tenant", exact=True).fill(OTHER_TENANT)
        page.get_by_label("Reason").fill("suspicious refunds")
        page.get_by_test_id("kill-button").click()
        kill = page.locator(f'[data-testid="active-kill"][data-scope="tenant:{OTHER_TENANT}"]')
        expect(kill).to_contain_text("suspicious refunds")
        expect(kill).to_contain_text("console:bob")

        page.get_by_label("Reason").fill("checked: all fine")
        kill.get_by_test_id("lift-active").click()
        expect(page.get_by_test_id("kills-empty")).to_be_visible()
        audit = page.get_by_test_id("audit-row")
        expect(audit.filter(has_text="console:bob")).to_have_count(2)

    active = console.api("kills", "bob")["active"]
    assert all(k["scope"] != f"tenant:{OTHER_TENANT}" for k in active), active


def test_an_admin_verifies_the_audit_chain_and_downloads_the_export(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    _escalate_large_refund(console)  # something on record: the guard's decisions

    with dashboard(browser, console, console.keys["root"], tmp_path) as page:
        expect(page.get_by_test_id("whoami")).to_contain_text("admin")
        scopes = page.get_by_test_id("kill-scope").locator("option")
        expect(scopes).to_have_text(["Tenant", "Global (every tenant)"])
        expect(page.get_by_test_id("audit-row").first).to_be_visible()

        page.get_by_test_id("verify-button").click()
        expect(page.get_by_test_id("verify-status")).to_contain_text("Intact")
        expect(page.get_by_test_id("verify-problem")).to_have_count(0)

        # The export is fetched with the key (a plain link could not send it) and saved.
        with page.expect_download() as download:
            page.get_by_test_id("export-jsonl").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)

    assert saved.name == "bastion-audit.jsonl"
    exported = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines()]
    on_record = console.api("audit", "root", limit=1000)["records"]
    assert exported, "the export is empty"
    assert exported == on_record[: len(exported)]

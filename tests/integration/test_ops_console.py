"""The operators' console in a real headless Chromium against a real broker (embedded, dev mode).

The browser is Debian's ``chromium`` at /usr/bin/chromium driven by Playwright (never a downloaded
build). Without it the browser tests skip with a message, except under CI=true, where they fail; the
HTTP-level access checks run regardless. Every page is screenshotted into docs/ops/ (README links them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.integration.ops_harness import (
    VIEWER,
    VIEWER_PASSWORD,
    Console,
    logged_in_client,
    page_csrf,
    running_console,
    wait_until,
)
from tests.support.consumer import accept
from tests.support.processes import ROOT, HiemProcess, free_port, hiem_env, wait_healthy

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "docs" / "ops"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with running_console(tmp_path_factory.mktemp("ops")) as running:
        yield running


# -- access control over plain HTTP (no browser needed) -----------------------------------------------------
@pytest.mark.parametrize("path", ["/ops", "/ops/topics", "/ops/subscriptions", "/ops/notifications",
                                  "/ops/deliveries", "/ops/actions", "/ops/confirm?action=redeliver&delivery=1"])
def test_console_is_unreachable_without_login(console: Console, path: str) -> None:
    response = httpx.get(f"{console.url}{path}", timeout=10)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ops/login?next=/ops")
    polled = httpx.get(f"{console.url}{path}", headers={"X-Hiem-Partial": "1"}, timeout=10)
    assert polled.status_code == 401


def test_actions_are_refused_without_login(console: Console) -> None:
    response = httpx.post(f"{console.url}/ops/actions/redeliver", data={"delivery": str(console.dead[1])}, timeout=10)
    assert response.status_code == 403
    forged = httpx.get(f"{console.url}/ops", cookies={"hiem_ops": "eyJ1IjoiZGV2In0.AAAA"}, timeout=10)
    assert forged.status_code == 303, "a forged session cookie is no login"
    assert console.delivery(console.dead[1]).state == "dead"


def test_session_cookie_flags(console: Console) -> None:
    response = httpx.get(f"{console.url}/ops/login", timeout=10)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ops" in cookie
    assert "Secure" not in cookie, "plain HTTP: a Secure cookie would never come back"
    behind_tls = httpx.get(f"{console.url}/ops/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "Secure" in behind_tls.headers["set-cookie"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_wrong_password_is_refused(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=10) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ops/login").text).group(1)  # type: ignore[union-attr]
        bad = client.post("/ops/login", data={"csrf": csrf, "username": "dev", "password": "not-it"})
        assert bad.status_code == 401 and "wrong username or password" in bad.text
        no_token = client.post("/ops/login", data={"username": "dev", "password": console.password})
        assert no_token.status_code == 403, "the login form is CSRF-protected too"


def test_action_without_csrf_token_is_refused(console: Console) -> None:
    target = {"delivery": str(console.dead[1]), "back": "/ops/deliveries"}
    with logged_in_client(console) as client:
        assert client.post("/ops/actions/redeliver", data=target).status_code == 403
        assert client.post("/ops/actions/redeliver", data={**target, "csrf": "forged"}).status_code == 403
        other_origin = client.post("/ops/actions/redeliver", data={**target, "csrf": page_csrf(client)},
                                   headers={"Origin": "http://evil.example"})
        assert other_origin.status_code == 403
    assert console.delivery(console.dead[1]).state == "dead", "nothing was redelivered"


def test_viewer_cannot_redeliver(console: Console) -> None:
    with logged_in_client(console, VIEWER, VIEWER_PASSWORD) as client:
        deliveries = client.get("/ops/deliveries")
        assert deliveries.status_code == 200 and f'id="delivery-{console.dead[1]}"' in deliveries.text
        assert "/ops/confirm" not in deliveries.text, "a viewer is shown no action buttons"
        confirm = client.get(f"/ops/confirm?action=redeliver&delivery={console.dead[1]}")
        assert confirm.status_code == 403
        refused = client.post("/ops/actions/redeliver", data={"delivery": str(console.dead[1]),
                                                           "csrf": page_csrf(client)})
        assert refused.status_code == 403
    assert console.delivery(console.dead[1]).state == "dead"
    last = console.actions()[-1]
    assert (last.username, last.action, last.outcome) == (VIEWER, "redeliver", "refused: viewer role")


def test_ops_port_serves_only_the_console(tmp_path: Path) -> None:
    port, ops_port = free_port(), free_port()
    env = hiem_env(HIEM_DATABASE_URL=f"sqlite:///{tmp_path / 'hiem.db'}")
    web = HiemProcess(["serve", "--dev", "--port", str(port), "--ops-port", str(ops_port)], env,
                      tmp_path / "web.log").start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}", web)
        main, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
        wait_until(lambda: _answers(f"{ops}/metrics"), 20, "the ops port")
        assert httpx.get(f"{main}/ops", timeout=10).status_code == 404
        assert httpx.get(f"{main}/metrics", timeout=10).status_code == 404
        assert httpx.get(f"{ops}/ops", timeout=10).status_code == 303
        assert httpx.get(f"{ops}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"{ops}/wsn/NotificationProducer?wsdl", timeout=10).status_code == 404
        assert f"ops console: http://127.0.0.1:{ops_port}/ops" in web.output()
    finally:
        web.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- in a real browser ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = (f"the browser tests need Debian's chromium at {CHROMIUM}: `apt-get install chromium` "
                   "(scripts/system-deps.sh does it); Playwright never downloads a browser here")
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, console: Console, username: str, password: str, shot: str | None = None) -> None:
    from playwright.sync_api import expect

    page.goto(f"{console.url}/ops/deliveries")
    expect(page).to_have_url(re.compile(r"/ops/login\?next=/ops/deliveries$"))
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    if shot:
        shoot(page, shot)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("h1")).to_have_text("Deliveries")
    expect(page.locator(".who")).to_contain_text(username)


def test_dead_delivery_redelivered_from_the_console(console: Console, browser: Browser) -> None:
    from playwright.sync_api import expect

    target = console.dead[0]
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        log_in(page, console, "dev", console.password, shot="login")
        row = page.locator(f"#delivery-{target}")
        expect(row).to_have_attribute("data-state", "dead")
        expect(row).to_contain_text("HTTP 400")
        expect(page.locator("table").first).to_contain_text(console.failing.url)
        shoot(page, "deliveries")
        for path, heading, name in [("/ops", "Overview", "overview"), ("/ops/topics", "Topics", "topics"),
                                    ("/ops/subscriptions", "Subscriptions", "subscriptions"),
                                    ("/ops/notifications", "Notifications", "notifications")]:
            page.goto(console.url + path)
            expect(page.locator("h1")).to_have_text(heading)
            shoot(page, name)

        console.failing.behaviour = accept  # the consumer is fixed; now redeliver
        page.goto(f"{console.url}/ops/subscriptions/{console.failing_subscription}")
        expect(page.locator("pre.xml").first).to_contain_text(console.failing_subscription)
        expect(row).to_have_attribute("data-state", "dead")
        shoot(page, "subscription")
        row.get_by_role("button", name="Redeliver").click()
        expect(page.locator(".question")).to_contain_text(f"Redeliver dead delivery {target}?")
        shoot(page, "confirm")
        page.get_by_role("button", name="Yes, redeliver").click()
        expect(page.locator(".flash")).to_contain_text(f"delivery {target} redelivered")
        page.evaluate("window.hiemNotReloaded = true")
        expect(row).to_have_attribute("data-state", "delivered", timeout=30_000)
        assert page.evaluate("window.hiemNotReloaded") is True, "the page updated itself, it was not reloaded"
        expect(page.locator("#updated")).to_contain_text("updated")
        shoot(page, "subscription-redelivered")

        assert console.delivery(target).state == "delivered"
        assert len(console.failing.received) == 3, "two refused Notifies, then the redelivered one"
        mine = [a for a in console.actions() if a.username == "dev"]
        assert [(a.action, a.target, a.outcome) for a in mine] == [("redeliver", str(target),
                                                                     f"delivery {target} redelivered")]
        page.goto(f"{console.url}/ops/actions")
        expect(page.locator("table")).to_contain_text(f"delivery {target} redelivered")
        shoot(page, "activity")
    finally:
        context.close()


def test_viewer_sees_everything_but_cannot_redeliver_in_the_browser(console: Console, browser: Browser) -> None:
    from playwright.sync_api import expect

    target = console.dead[1]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        log_in(page, console, VIEWER, VIEWER_PASSWORD)
        expect(page.locator(f"#delivery-{target}")).to_have_attribute("data-state", "dead")
        expect(page.get_by_role("button", name="Redeliver")).to_have_count(0)
        shoot(page, "deliveries-phone-viewer")
        page.goto(f"{console.url}/ops")
        expect(page.locator("h1")).to_have_text("Overview")
        shoot(page, "overview-phone")

        csrf = page.locator('form[action="/ops/logout"] input[name="csrf"]').get_attribute("value")
        refused = page.request.post(f"{console.url}/ops/actions/redeliver",
                                    form={"delivery": str(target), "csrf": csrf or ""}, max_redirects=0)
        assert refused.status == 403
        without_token = page.request.post(f"{console.url}/ops/actions/redeliver", form={"delivery": str(target)},
                                          max_redirects=0)
        assert without_token.status == 403
        assert console.delivery(target).state == "dead"

        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r"/ops/login$"))
        page.goto(f"{console.url}/ops/deliveries")
        expect(page).to_have_url(re.compile(r"/ops/login\?next="))
    finally:
        context.close()

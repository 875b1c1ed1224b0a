"""End to end in headless Chromium: a partner developer signs in, is approved by an admin in
the portal's admin view, creates a key, calls the API with it, sees the call in the usage
chart and revokes the key. Screenshots of each step go to tests/output/portal/."""

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.fixtures.consumers import ADMIN
from tests.portal.browser import BrowserThread

QUOTES = "/partner/v1/quotes"
# Inputs a page shows that have no label a screen reader would read.
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML)"""


def _sign_in(page: Any, url: str, *, username: str, return_to: str) -> None:
    page.goto(f"{url}/auth/login?return_to={return_to}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button").first.click()
    page.wait_for_url(f"{url}{return_to}")


def _local_only(context: Any, url: str, outside: list[str]) -> None:
    """Refuse (and remember) every request that would leave the machine."""
    local = {urlsplit(url).hostname, "127.0.0.1", "localhost"}

    def route(request_route: Any) -> None:
        host = urlsplit(request_route.request.url).hostname
        if host in local:
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)


def test_developer_signs_in_is_approved_creates_a_key_calls_sees_usage_and_revokes(
    browser: BrowserThread, portal_url: str, screenshots: Path
) -> None:
    started = time.time()
    outside = browser.run(lambda chromium: _journey(chromium, portal_url, screenshots))
    # Everything the pages loaded came from the gateway (and the local identity provider).
    assert outside == []
    # Written by this run, not left from an earlier one.
    assert (screenshots / "08-key-revoked.png").stat().st_mtime >= started - 1


def _journey(browser: Any, url: str, screenshots: Path) -> list[str]:
    plan = f"browser-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=url, timeout=10) as api:
        created = api.post(
            "/admin/v1/plans",
            json={"name": plan, "scopes": ["quotes:read"], "quota_per_day": 1000},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text

        outside: list[str] = []
        developer = browser.new_context(viewport={"width": 1280, "height": 900})
        admin = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            _local_only(developer, url, outside)
            _local_only(admin, url, outside)
            dana = developer.new_page()

            # The landing page, and the keyboard's first stop is the skip link.
            dana.goto(f"{url}/portal/")
            dana.screenshot(path=screenshots / "01-landing.png", full_page=True)
            dana.keyboard.press("Tab")
            assert dana.evaluate("document.activeElement.textContent") == "Skip to content"

            # Sign in through the identity provider, ask for access.
            dana.get_by_role("link", name="Sign in").first.click()
            dana.get_by_label("Username").fill("dana")
            dana.get_by_label("Password").fill("demo")
            dana.get_by_role("button").first.click()
            dana.wait_for_url(f"{url}/portal/")
            assert dana.evaluate(UNLABELLED) == []
            # Filled in from the identity provider's ID token.
            assert dana.get_by_label("Your name").input_value() == "Dana Developer"
            assert dana.get_by_label("Email").input_value() == "dana@partner.example"
            dana.get_by_label("What will you build?").fill("A portfolio tracker for our clients.")
            dana.get_by_label("Company").fill("Partner Inc")
            dana.get_by_role("button", name="Request access").click()
            assert dana.locator("#signup-status").inner_text() == "Waiting for approval"
            dana.screenshot(path=screenshots / "02-waiting-for-approval.png", full_page=True)

            # An admin approves the sign-up in the portal's admin view.
            carol = admin.new_page()
            _sign_in(carol, url, username="carol", return_to="/portal/admin")
            assert carol.evaluate(UNLABELLED) == []
            carol.locator('tr[data-subject="dana"]').get_by_label("Plan").select_option(plan)
            carol.screenshot(path=screenshots / "03-admin-approves.png", full_page=True)
            carol.get_by_role("button", name="Approve Dana Developer").click()
            carol.wait_for_url("**notice=signup-approved")
            assert carol.locator('tr[data-subject="dana"] .state').text_content() == "approved"

            # The developer has a plan and creates a key, shown once with a copy button.
            dana.goto(f"{url}/portal/")
            assert dana.locator("#current-plan").inner_text() == plan
            dana.screenshot(path=screenshots / "04-overview.png", full_page=True)
            dana.get_by_role("navigation", name="Portal").get_by_role("link", name="Keys").click()
            assert dana.evaluate(UNLABELLED) == []
            dana.get_by_label("Key name").fill("browser test")
            dana.get_by_role("button", name="Create key").click()
            key = dana.locator("#new-key").input_value()
            assert key.startswith("sbk_")
            # The button is the page's script's; it shows once the deferred script has run.
            dana.get_by_role("button", name="Copy").wait_for(state="visible", timeout=10_000)
            dana.get_by_role("button", name="Copy").click()
            dana.get_by_role("button", name="Copied").wait_for(state="visible", timeout=10_000)
            dana.screenshot(path=screenshots / "05-key-created.png", full_page=True)

            # Calls with it: from a partner system, and from the docs' try-it form, whose
            # key field the page filled in.
            called = api.get(QUOTES, params={"symbols": "AAPL"}, headers={"X-API-Key": key})
            assert called.status_code == 200, called.text
            dana.get_by_role("link", name="Try it in the API docs").click()
            operation = dana.locator("#partner_quotes")
            operation.locator("summary").click()
            assert operation.get_by_label("API key").input_value() == key
            operation.get_by_role("button", name="Send request").click()
            assert dana.locator("#try-result .status-code").inner_text() == "200"
            dana.screenshot(path=screenshots / "06-try-it.png", full_page=True)

            # Both calls are in the usage chart.
            dana.get_by_role("navigation", name="Portal").get_by_role("link", name="Usage").click()
            assert dana.locator("#total-requests").inner_text() == "2"
            bars = dana.locator('#hourly rect[data-class="2xx"]')
            assert bars.count() == 1 and bars.first.get_attribute("data-count") == "2"
            assert "GET /partner/v1/quotes" in dana.locator("#routes").inner_text()
            dana.screenshot(path=screenshots / "07-usage.png", full_page=True)

            # Revoked: the key stops working at once.
            dana.get_by_role("navigation", name="Portal").get_by_role("link", name="Keys").click()
            dana.on("dialog", lambda dialog: dialog.accept())
            dana.get_by_role("button", name="Revoke key browser test").click()
            dana.wait_for_url("**notice=key-revoked")
            assert dana.locator("tbody .state").first.text_content() == "revoked"
            dana.screenshot(path=screenshots / "08-key-revoked.png", full_page=True)
            refused = api.get(QUOTES, params={"symbols": "AAPL"}, headers={"X-API-Key": key})
            assert refused.status_code == 401
        finally:
            developer.close()
            admin.close()
    return outside


def test_without_javascript_a_developer_still_gets_access_a_key_and_revokes_it(
    browser: BrowserThread, portal_url: str, screenshots: Path
) -> None:
    with httpx.Client(base_url=portal_url, timeout=10) as api:
        plan = f"nojs-{uuid.uuid4().hex[:6]}"
        created = api.post(
            "/admin/v1/plans", json={"name": plan, "scopes": ["quotes:read"]}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        key = browser.run(
            lambda chromium: _journey_without_script(chromium, portal_url, screenshots)
        )
        assert (
            api.get(QUOTES, params={"symbols": "AAPL"}, headers={"X-API-Key": key}).status_code
            == 401
        )


def _journey_without_script(browser: Any, url: str, screenshots: Path) -> str:
    developer = browser.new_context(java_script_enabled=False)
    admin = browser.new_context(java_script_enabled=False)
    try:
        erin = developer.new_page()
        _sign_in(erin, url, username="erin", return_to="/portal/")
        erin.get_by_label("What will you build?").fill("A spreadsheet add-in, no scripts needed.")
        erin.get_by_role("button", name="Request access").click()
        assert erin.locator("#signup-status").inner_text() == "Waiting for approval"
        carol = admin.new_page()
        _sign_in(carol, url, username="carol", return_to="/portal/admin")
        carol.get_by_role("button", name="Approve Erin Builder").click()
        assert carol.locator('tr[data-subject="erin"] .state').text_content() == "approved"
        erin.goto(f"{url}/portal/keys")
        erin.get_by_label("Key name").fill("no script")
        erin.get_by_role("button", name="Create key").click()
        key: str = erin.locator("#new-key").input_value()
        assert key.startswith("sbk_")
        # The copy button needs the script: hidden without it; the key is there to select.
        assert not erin.locator("[data-copy]").is_visible()
        erin.screenshot(path=screenshots / "09-no-js-key-created.png", full_page=True)
        erin.goto(f"{url}/portal/keys")
        erin.get_by_role("button", name="Revoke key no script").click()
        assert erin.locator("tbody .state").first.text_content() == "revoked"
        return key
    finally:
        developer.close()
        admin.close()

"""/docs and /redoc in headless Chromium with every request off this machine refused: the
pages render each frontend's operations from the gateway's own assets."""

import json
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from app.main import DOCUMENTS
from app.openapi_export import generated_documents
from tests.portal.browser import BrowserThread

LISTED = [d for d in DOCUMENTS if not d.admin_only]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@cache
def _documents() -> dict[str, Any]:
    """Built in the test's thread: pydantic builds schemas unsafely across threads, and the
    gateway's thread builds the served documents at the same time."""
    return {name: json.loads(text) for name, text in generated_documents().items()}


def _operations(slug: str) -> set[tuple[str, str]]:
    document = _documents()[f"{slug}.json"]
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def _operation_ids(slug: str) -> set[str]:
    document = _documents()[f"{slug}.json"]
    return {
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in METHODS
    }


def _local_page(browser: Any, url: str, outside: list[str]) -> Any:
    """A page whose requests to any host but the gateway's are aborted (and remembered)."""
    local = {urlsplit(url).hostname, "127.0.0.1", "localhost"}
    context = browser.new_context()

    def route(request_route: Any) -> None:
        if urlsplit(request_route.request.url).hostname in local:
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)
    return context.new_page()


_RENDERED = """() => [...document.querySelectorAll('#swagger-ui .opblock')].map(block => [
  block.querySelector('.opblock-summary-method').textContent.toLowerCase(),
  block.querySelector('[data-path]').getAttribute('data-path'),
])"""


def _swagger_journey(
    browser: Any, url: str, expected: dict[str, set[tuple[str, str]]]
) -> dict[str, Any]:
    outside: list[str] = []
    page = _local_page(browser, url, outside)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}/docs")
    options = page.eval_on_selector_all("#doc option", "options => options.map(o => o.value)")
    rendered: dict[str, set[tuple[str, str]]] = {}
    for slug in options:
        page.select_option("#doc", slug)
        page.wait_for_function(
            "() => document.querySelectorAll('#swagger-ui .opblock').length === "
            f"{len(expected[slug])}"
            f" && document.querySelector('#swagger-ui .opblock [data-path]')"
            f".getAttribute('data-path').startsWith({json.dumps(_prefix(slug))})",
            timeout=30_000,
        )
        rendered[slug] = {(m, p) for m, p in page.evaluate(_RENDERED)}
    page.context.close()
    return {"options": options, "rendered": rendered, "outside": outside, "errors": errors}


def _prefix(slug: str) -> str:
    return next(d.prefix for d in DOCUMENTS if d.slug == slug)


def _redoc_journey(browser: Any, url: str) -> dict[str, Any]:
    outside: list[str] = []
    page = _local_page(browser, url, outside)
    rendered: dict[str, set[str]] = {}
    for document in LISTED:
        page.goto(f"{url}/redoc?doc={document.slug}")
        page.wait_for_selector('[data-section-id^="operation/"]', timeout=30_000)
        sections = page.eval_on_selector_all(
            '[data-section-id^="operation/"]',
            "sections => sections.map(s => s.getAttribute('data-section-id'))",
        )
        rendered[document.slug] = {s.removeprefix("operation/") for s in sections}
    page.context.close()
    return {"rendered": rendered, "outside": outside}


def test_swagger_ui_renders_every_frontends_operations_offline(
    browser: BrowserThread, docs_url: str
) -> None:
    expected = {document.slug: _operations(document.slug) for document in LISTED}
    seen = browser.run(lambda chromium: _swagger_journey(chromium, docs_url, expected))
    assert seen["outside"] == []
    assert seen["errors"] == []
    # The selector offers every public document (web-v2 too), never the admin one.
    assert seen["options"] == [d.slug for d in LISTED]
    assert "admin-v1" not in seen["options"]
    for document in LISTED:
        assert seen["rendered"][document.slug] == expected[document.slug], document.slug


def test_redoc_renders_every_frontends_operations_offline(
    browser: BrowserThread, docs_url: str
) -> None:
    seen = browser.run(lambda chromium: _redoc_journey(chromium, docs_url))
    assert seen["outside"] == []
    for document in LISTED:
        assert _operation_ids(document.slug) <= seen["rendered"][document.slug], document.slug

"""Fixtures of the docs pages' browser tests: the portal's headless Chromium (one per module
here) and the gateway on a thread of its own, so the browser's thread can reach it."""

from collections.abc import Iterator

import pytest

from app.settings import Settings
from tests.portal.browser import BrowserThread, chromium, gateway_thread


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    with chromium() as running:
        yield running


@pytest.fixture
def docs_url(settings: Settings) -> Iterator[str]:
    with gateway_thread(settings) as url:
        yield url

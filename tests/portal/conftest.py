"""Fixtures of the portal's browser tests."""

from collections.abc import Iterator
from typing import Any

import pytest

from app.settings import Settings
from tests.portal.browser import SCREENSHOTS, BrowserThread, chromium, gateway_thread


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    with chromium() as running:
        yield running


@pytest.fixture
def portal_url(settings: Settings) -> Iterator[str]:
    with gateway_thread(settings) as url:
        yield url


@pytest.fixture
def screenshots() -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS

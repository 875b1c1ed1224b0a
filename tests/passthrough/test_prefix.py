"""The pass-through prefix is a setting, and never one of the gateway's own paths."""

import pytest
from pydantic import ValidationError

from app.settings import PassthroughSettings, Settings


@pytest.mark.parametrize(
    "prefix",
    [
        "/web/",
        "/mobile/",
        "/partner/",
        "/admin/",
        "/auth/",
        "/docs/",
        "/openapi/",
        "/healthz/",
        "/readyz/",
        "/metrics/",
        "/",
        "api/",
        "/api",
        "/a/b/",
    ],
)
def test_a_prefix_that_would_shadow_the_gateway_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError):
        PassthroughSettings(prefix=prefix)


def test_the_prefix_is_a_setting() -> None:
    assert Settings().passthrough.prefix == "/api/"
    assert PassthroughSettings(prefix="/services/").prefix == "/services/"

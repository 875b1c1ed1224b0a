"""The composed views a signed-in user loads most are answered past FastAPI's routing and
dependency solving (`app.frontends.direct`), alike: statuses, headers (a superseded
version's deprecation headers included, on problems too), the shape of each view, the same
problems."""

import pytest

from tests.fixtures.direct_routes import Case, direct_and_routed
from tests.fixtures.gateway import RunningGateway

UNSIGNED = {"Authorization": "Bearer not-a-token"}


async def test_the_direct_views_are_fastapis(
    alice: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases: list[Case] = [
        ("/web/v1/dashboard", {}, {}),
        ("/web/v2/dashboard", {}, {}),
        ("/web/v1/symbols/AAPL", {}, {}),
        ("/web/v2/symbols/MSFT", {}, {}),
        # Not a symbol: the path parameter's 422, on the superseded version with its headers.
        ("/web/v1/symbols/not!a!symbol", {}, {}),
        ("/web/v1/symbols/ZZZZ", {}, {}),
        ("/web/v1/bots", {}, {}),
        ("/mobile/v1/home", {}, {}),
        # Refused before any dependency runs.
        ("/web/v1/dashboard", {}, UNSIGNED),
        ("/mobile/v1/home", {}, UNSIGNED),
    ]
    directly, routed, answered_directly = await direct_and_routed(
        alice, monkeypatch, cases, cached="/upstream/*", shaped=True
    )
    assert answered_directly == len(cases)
    assert routed == directly
    statuses = [status for status, _, _ in routed]
    assert statuses == [200, 200, 200, 200, 422, 404, 200, 200, 401, 401]
    superseded = [headers for (path, _, _), (_, headers, _) in zip(cases, routed, strict=True)]
    for (path, _, _), headers in zip(cases, superseded, strict=True):
        names = {name for name, _ in headers}
        assert ("deprecation" in names) == path.startswith("/web/v1/"), (path, names)
    # The view's shape: the account and positions came, nothing degraded.
    dashboard = routed[0][2]
    assert isinstance(dashboard, dict) and dashboard["degraded"] == []
    assert {"account", "positions", "watchlists", "open_orders", "bots", "news"} <= set(dashboard)

"""API versions: /web/v1 deprecated in favour of /web/v2 (headers, documents), GET /versions."""

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from app.frontends.versions import API_VERSIONS, WEB_V1
from app.frontends.web.v1.router import router as web_v1
from app.frontends.web.v2.router import router as web_v2
from app.openapi_export import generated_documents
from app.settings import Settings, VersionDates, VersionSettings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.problems import assert_problem

DEPRECATED_AT = datetime(2026, 12, 1, tzinfo=UTC)
SUNSET = datetime(2027, 6, 30, 12, 30, tzinfo=UTC)
# RFC 8594 Sunset: an IMF-fixdate (RFC 9110), always GMT.
HTTP_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$"
)


@pytest.fixture
async def alice(settings: Settings, platform: Platform) -> Any:
    dates = VersionDates(deprecated_at=DEPRECATED_AT, sunset=SUNSET)
    chosen = settings.model_copy(update={"versions": VersionSettings(superseded={"web/v1": dates})})
    async with running_gateway(chosen) as running:
        running.client.headers.update(await bearer_headers(platform, username="alice"))
        yield running


def test_every_v1_route_has_its_successor_in_v2() -> None:
    def routes(router: Any, prefix: str) -> set[tuple[str, str]]:
        return {
            (method, route.path.removeprefix(prefix))
            for route in router.routes
            for method in getattr(route, "methods", None) or ()
        }

    v1 = routes(web_v1, "/web/v1")
    assert v1 and v1 <= routes(web_v2, "/web/v2")


async def test_v1_answers_carry_deprecation_sunset_and_successor(alice: RunningGateway) -> None:
    response = await alice.client.get("/web/v1/orders", params={"limit": 1})

    assert response.status_code == 200, response.text
    assert response.headers["deprecation"] == f"@{int(DEPRECATED_AT.timestamp())}"
    assert response.headers["deprecation"] == "@1796083200"
    sunset = response.headers["sunset"]
    assert HTTP_DATE.match(sunset) and sunset == "Wed, 30 Jun 2027 12:30:00 GMT"
    assert parsedate_to_datetime(sunset) == SUNSET
    assert response.headers["link"] == (
        '</web/v2/orders>; rel="successor-version", </versions>; rel="deprecation"'
    )
    # The successor answers, without any of them.
    successor = await alice.client.get("/web/v2/orders", params={"limit": 1})
    assert successor.status_code == 200, successor.text
    assert not {"deprecation", "sunset", "link"} & successor.headers.keys()


async def test_the_successor_names_the_same_resource(alice: RunningGateway) -> None:
    response = await alice.client.get("/web/v1/symbols/AAPL")

    assert response.status_code == 200, response.text
    assert response.headers["link"].startswith('</web/v2/symbols/AAPL>; rel="successor-version"')
    same = await alice.client.get("/web/v2/symbols/AAPL")
    assert same.status_code == 200 and same.json()["symbol"] == "AAPL"


async def test_v1_problems_are_marked_too(alice: RunningGateway) -> None:
    problem = await alice.client.get("/web/v1/orders", params={"status": "done"})
    missing = await alice.client.get("/web/v1/symbols/ZZZZ")

    assert_problem(problem, 422)
    assert_problem(missing, 404)
    for response in (problem, missing):
        assert response.headers["deprecation"] == "@1796083200"
        assert "successor-version" in response.headers["link"]


async def test_versions_lists_each_frontend_with_status_and_dates(alice: RunningGateway) -> None:
    response = await alice.client.get("/versions")

    assert response.status_code == 200, response.text
    listed = {(v["frontend"], v["version"]): v for v in response.json()["versions"]}
    assert set(listed) == {(v.frontend, v.version) for v in API_VERSIONS}
    assert {"web", "mobile", "partner"} == {frontend for frontend, _ in listed}
    web_v1_entry = listed[("web", "v1")]
    assert web_v1_entry["status"] == "deprecated"
    assert web_v1_entry["successor"] == "/web/v2"
    assert web_v1_entry["prefix"] == "/web/v1"
    assert datetime.fromisoformat(web_v1_entry["sunset"]) == SUNSET
    assert datetime.fromisoformat(web_v1_entry["deprecated_at"]) == DEPRECATED_AT
    for key in (("web", "v2"), ("mobile", "v1"), ("partner", "v1")):
        assert listed[key]["status"] == "current"
        assert listed[key]["successor"] is None and listed[key]["sunset"] is None
        # Each names its own document, which is served.
        document = await alice.client.get(listed[key]["openapi"])
        assert document.status_code == 200
        assert document.json()["paths"]


def test_default_settings_date_every_superseded_version() -> None:
    superseded = {v.key for v in API_VERSIONS if v.successor is not None}
    assert superseded == {WEB_V1.key} <= Settings().versions.superseded.keys()


def test_v1_document_marks_its_operations_deprecated_and_v2_does_not() -> None:
    documents = {name.removesuffix(".json"): text for name, text in generated_documents().items()}
    v1, v2 = json.loads(documents["web-v1"]), json.loads(documents["web-v2"])
    v1_operations = [op for item in v1["paths"].values() for op in item.values()]
    v2_operations = [op for item in v2["paths"].values() for op in item.values()]
    assert v1_operations and all(op.get("deprecated") is True for op in v1_operations)
    assert v2_operations and not any(op.get("deprecated") for op in v2_operations)
    ok = v1["paths"]["/web/v1/dashboard"]["get"]["responses"]["200"]["headers"]
    assert {"Deprecation", "Sunset", "Link"} <= ok.keys()
    assert "sectors" in json.dumps(v2["components"]["schemas"]["DashboardView"])

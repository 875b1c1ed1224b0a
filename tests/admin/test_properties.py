"""Property: whatever the admin API accepts, the frontends still answer.

Plans, consumers with a key, and rate limit rules are generated anywhere inside the schemas
the admin API documents (read from its request models, so tighter bounds there are followed
here), created through the API, and then a partner calls quotes with the consumer's key and
an anonymous browser asks for the dashboard. The admin API may refuse an example (422, and it
is skipped) but never answers 500; the partner gets 200 or 429 when its plan grants quotes
(401 when the consumer is disabled, 403 when it holds no such scope), the browser 401 or
429; never a 500. One gateway per backend for the module; entities are deleted after each
example.
"""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from app.admin.consumers import ConsumerCreate, KeyCreate
from app.admin.plans import PlanCreate
from app.admin.rate_limits import RateLimitRuleCreate
from app.settings import IdentitySettings, Settings
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN
from tests.fixtures.databases import migrate, postgres_database, sqlite_url
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.store.store_backends import BACKENDS

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUOTES = "/partner/v1/quotes?symbols=AAPL"
Json = dict[str, Any]


def _strategy(schema: Json, defs: Json) -> st.SearchStrategy[Any]:
    """Values valid under one JSON schema, for the keywords the admin models use."""
    if "$ref" in schema:
        return _strategy(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return st.one_of([_strategy(option, defs) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return _numbers(schema)
    if kind == "string":
        return _strings(schema)
    if kind == "array":
        return st.lists(
            _strategy(schema["items"], defs),
            min_size=schema.get("minItems", 0),
            max_size=schema.get("maxItems", 5),
        )
    if kind == "object":
        return _objects(schema, defs)
    raise AssertionError(f"the property test does not know this schema yet: {schema}")


def _numbers(schema: Json) -> st.SearchStrategy[float | int]:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    floats = st.floats(
        min_value=low,
        max_value=high,
        exclude_min="exclusiveMinimum" in schema,
        exclude_max="exclusiveMaximum" in schema,
        allow_nan=False,
        allow_infinity=False,
    )
    # A JSON number may be written without a fraction.
    whole = st.integers(
        min_value=None if low is None else int(low) + 1,
        max_value=None if high is None else int(high),
    )
    return floats | whole


def _strings(schema: Json) -> st.SearchStrategy[str]:
    if schema.get("format") == "date-time":
        # A key's expiry must be in the future; an hour on leaves the test time to use it.
        offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
            lambda quarters: timezone(timedelta(minutes=15 * quarters))
        )
        return st.builds(
            lambda ahead, zone: (datetime.now(UTC) + ahead).astimezone(zone).isoformat(),
            st.timedeltas(min_value=timedelta(hours=1), max_value=timedelta(days=3650)),
            offsets,
        )
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: low <= len(s) and (high is None or len(s) <= high)
        )
    return st.text(min_size=low, max_size=high if high is not None else 50)


def _objects(schema: Json, defs: Json) -> st.SearchStrategy[Json]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    return st.fixed_dictionaries(
        {name: _strategy(properties[name], defs) for name in properties if name in required},
        optional={
            name: _strategy(properties[name], defs) for name in properties if name not in required
        },
    )


def bodies(model: type[BaseModel]) -> st.SearchStrategy[Json]:
    """Request bodies inside `model`'s documented schema."""
    schema = model.model_json_schema()
    return _objects(schema, schema.get("$defs", {}))


@st.composite
def configurations(draw: st.DrawFn) -> tuple[Json, Json, Json, list[Json]]:
    """A plan; a consumer on it (or on none); a key; up to two rules, a `plan` one naming it."""
    plan = draw(bodies(PlanCreate))
    consumer = draw(bodies(ConsumerCreate))
    consumer["plan"] = draw(st.sampled_from([plan["name"], None]))
    key = draw(bodies(KeyCreate))
    rules = draw(st.lists(bodies(RateLimitRuleCreate), max_size=2, unique_by=lambda r: r["name"]))
    for rule in rules:
        rule["plan_name"] = plan["name"] if rule["key_by"] == "plan" else None
    return plan, consumer, key, rules


@pytest.fixture(scope="module", params=BACKENDS)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated config store of each backend, one for the whole module."""
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("properties")
        url = sqlite_url(directory)
        migrate(url)
        yield url
        return
    with postgres_database() as url:
        migrate(url)
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    platform: Platform, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    snapshot = tmp_path_factory.mktemp("snapshot") / "config-snapshot.json"
    module_settings = Settings(
        environment="test",
        database_url=store_url,
        config_snapshot_path=str(Path(snapshot)),
        services={name: list(urls) for name, urls in platform.urls.items() if name != "identity"},
        identity=IdentitySettings(
            discovery_url=f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        admin_token="test-admin-token",
        access_log=False,
    )
    async with running_gateway(module_settings) as running:
        yield running


class AdminEntities:
    """Creates entities through the admin API and deletes them again, newest first."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.created: list[str] = []

    async def create(self, path: str, body: Json, *, location: str | None = None) -> Json:
        """The created entity; an example the API refuses (422) is skipped, never a 5xx.
        `location` names the field that addresses it under `path`, when it is deleted."""
        response = await self.client.post(path, json=body, headers=ADMIN)
        assert response.status_code < 500, f"POST {path} {body} -> {response.text}"
        if response.status_code == 422:
            event(f"admin refused {path}")
            reject()
        assert response.status_code == 201, f"POST {path} {body} -> {response.text}"
        created: Json = response.json()
        if location is not None:
            self.created.append(f"{path}/{created[location]}")
        return created

    async def delete_all(self) -> None:
        """Rules before consumers (their keys go with them) before plans."""
        while self.created:
            path = self.created.pop()
            deleted = await self.client.delete(path, headers=ADMIN)
            assert deleted.status_code == 204, f"DELETE {path} -> {deleted.text}"


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(configuration=configurations())
async def test_whatever_the_admin_api_accepts_the_frontends_still_answer(
    gateway: RunningGateway, configuration: tuple[Json, Json, Json, list[Json]]
) -> None:
    plan, consumer, key, rules = configuration
    client = gateway.client
    admin = AdminEntities(client)
    try:
        await admin.create("/admin/v1/plans", plan, location="name")
        created = await admin.create("/admin/v1/consumers", consumer, location="consumer_id")
        issued = await admin.create(f"/admin/v1/consumers/{created['consumer_id']}/keys", key)
        for rule in rules:
            await admin.create("/admin/v1/rate-limits", rule, location="rule_id")

        quotes = await client.get(QUOTES, headers={"X-API-Key": issued["key"]})
        granted = consumer.get("plan") is not None and "quotes:read" in plan.get("scopes", [])
        if not consumer.get("enabled", True):
            expected = {401}
        elif granted:
            expected = {200, 429}
        else:
            # Admission comes before authorization: a rule may refuse first.
            expected = {403, 429}
        assert quotes.status_code in expected, (configuration, quotes.text)

        dashboard = await client.get("/web/v1/dashboard")
        assert dashboard.status_code in {401, 429}, (configuration, dashboard.text)
    finally:
        await admin.delete_all()

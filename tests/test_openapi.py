"""The OpenAPI documents: committed = generated = served, and each operation fully described."""

import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.errors import GatewayError
from app.main import DOCUMENTS
from app.openapi_export import OPENAPI_DIR, generated_documents, main
from app.problems import PROBLEM_TYPES, problems_for
from app.settings import HttpSettings, Settings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers

SLUGS = [d.slug for d in DOCUMENTS]
ADMIN = {"Authorization": "Bearer test-admin-token"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@cache
def generated() -> dict[str, dict[str, Any]]:
    return {
        name.removesuffix(".json"): json.loads(text) for name, text in generated_documents().items()
    }


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_committed_documents_match_the_code() -> None:
    expected = generated_documents()
    stale = [
        name
        for name, text in expected.items()
        if not (OPENAPI_DIR / name).is_file()
        or (OPENAPI_DIR / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"openapi/{', openapi/'.join(stale)} out of date: run `make openapi`"


def test_check_mode_names_drifted_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for slug in SLUGS:
        assert f"{slug}.json" in err
    assert "make openapi" in err

    assert main(["--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.json" for s in SLUGS)
    text = (tmp_path / "web-v1.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "')
    assert main(["--check", "--dir", str(tmp_path)]) == 0

    (tmp_path / "admin-v1.json").write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "admin-v1.json" in err and "web-v1.json" not in err


@pytest.mark.parametrize("slug", SLUGS)
def test_every_operation_is_described(slug: str) -> None:
    document = generated()[slug]
    found = operations(document)
    assert found, f"{slug} documents no operation"
    operation_ids = [op["operationId"] for _, _, op in found]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    for method, path, operation in found:
        where = f"{slug}: {method} {path}"
        fallback = operation["operationId"].replace("_", " ").title()
        # The summary comes from the handler's one-line docstring.
        assert operation.get("summary") and operation["summary"] != fallback, (
            f"{where} has no docstring summary"
        )
        problems = [
            status
            for status, response in operation["responses"].items()
            if status[0] in "45" and "application/problem+json" in response.get("content", {})
        ]
        assert problems, f"{where} documents no problem+json error response"
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert "application/json" not in response.get("content", {}), (
                    f"{where} {status} is documented as plain JSON"
                )
    assert "Problem" in document["components"]["schemas"]


def test_admin_operations_require_the_admin_token() -> None:
    document = generated()["admin-v1"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["AdminToken"]["type"] == "http"
    assert schemes["AdminToken"]["scheme"] == "bearer"
    for method, path, operation in operations(document):
        schemes_used = {
            name for requirement in operation.get("security", []) for name in requirement
        }
        assert "AdminToken" in schemes_used, f"{method} {path}"
        assert "401" in operation["responses"], f"{method} {path}"
    operation_ids = {op["operationId"] for _, _, op in operations(document)}
    assert {
        "list_services",
        "create_service",
        "get_service",
        "update_service",
        "delete_service",
        "list_instances",
        "add_instance",
        "update_instance",
        "remove_instance",
    } <= operation_ids


async def test_served_documents_are_the_generated_ones(gateway: RunningGateway) -> None:
    for document in DOCUMENTS:
        headers = ADMIN if document.admin_only else {}
        response = await gateway.client.get(f"{document.prefix}/openapi.json", headers=headers)
        assert response.status_code == 200
        assert response.json() == generated()[document.slug], document.slug


async def test_swagger_ui_offers_every_public_document(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in response.text
    for document in DOCUMENTS:
        if not document.admin_only:
            assert f'"{document.prefix}/openapi.json"' in response.text
            assert document.title in response.text


async def test_the_admin_document_needs_the_admin_role(
    gateway: RunningGateway, platform: Platform
) -> None:
    url = "/admin/v1/openapi.json"
    anonymous = await gateway.client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert "paths" not in anonymous.json()

    trader = await gateway.client.get(url, headers=await bearer_headers(platform, username="alice"))
    assert trader.status_code == 403

    for admin in (ADMIN, await bearer_headers(platform, username="carol")):
        allowed = await gateway.client.get(url, headers=admin)
        assert allowed.status_code == 200
        assert allowed.json() == generated()["admin-v1"]


async def test_swagger_ui_does_not_offer_the_admin_document(gateway: RunningGateway) -> None:
    page = await gateway.client.get("/docs")
    assert page.status_code == 200
    assert "/admin/v1/openapi.json" not in page.text
    assert "admin-v1" not in page.text
    assert "admin API" not in page.text


async def test_a_setting_makes_the_admin_document_public(settings: Settings) -> None:
    public = settings.model_copy(update={"http": HttpSettings(public_admin_docs=True)})
    async with running_gateway(public) as gw:
        document = await gw.client.get("/admin/v1/openapi.json")
        page = await gw.client.get("/docs")
    assert document.status_code == 200
    assert document.json() == generated()["admin-v1"]
    assert '"/admin/v1/openapi.json"' in page.text


async def test_no_server_banner(gateway: RunningGateway) -> None:
    for path in ("/healthz", "/docs", "/nowhere"):
        response = await gateway.client.get(path)
        assert "server" not in response.headers, path


async def test_redoc_shows_one_document(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/redoc", params={"doc": "web-v1"})
    assert response.status_code == 200
    assert 'spec-url="/web/v1/openapi.json"' in response.text

    missing = await gateway.client.get("/redoc", params={"doc": "nope"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    problem = missing.json()
    assert "nope" in problem["detail"]
    for slug in SLUGS:
        assert slug in problem["detail"]


async def test_the_docs_pages_load_only_the_gateways_own_assets(gateway: RunningGateway) -> None:
    for page in ("/docs", "/docs?doc=web-v2", "/redoc?doc=partner-v1"):
        response = await gateway.client.get(page)
        assert response.status_code == 200, page
        # The browser itself refuses anything from elsewhere (ReDoc's attribution logo).
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert sources, page
        for source in sources:
            assert source.startswith("/") and not source.startswith("//"), (page, source)
            asset = await gateway.client.get(source)
            assert asset.status_code == 200, (page, source)
    bundle = await gateway.client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "SwaggerUIBundle" in bundle.text
    redoc = await gateway.client.get("/docs/assets/redoc.standalone.js")
    assert redoc.status_code == 200 and "Redoc" in redoc.text
    redirect = await gateway.client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "oauth2" in redirect.text


async def test_swagger_ui_opens_the_document_asked_for(gateway: RunningGateway) -> None:
    page = await gateway.client.get("/docs", params={"doc": "partner-v1"})
    assert '"url": "/partner/v1/openapi.json"' in page.text
    assert re.search(r'<option value="partner-v1"[^>]*selected', page.text)
    hidden = await gateway.client.get("/docs", params={"doc": "admin-v1"})
    assert hidden.status_code == 404
    assert "admin-v1" not in hidden.json()["detail"].partition("known:")[2]


def _examples(document: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example a document gives."""
    found = []
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        for index, example in enumerate(schema.get("examples", [])):
            found.append((f"components.schemas.{name}[{index}]", schema, example))
        for field, prop in schema.get("properties", {}).items():
            for index, example in enumerate(prop.get("examples", [])):
                found.append((f"components.schemas.{name}.{field}[{index}]", prop, example))
    for method, path, operation in operations(document):
        contents = [("requestBody", operation.get("requestBody", {}).get("content", {}))]
        contents += [
            (f"responses.{status}", response.get("content", {}))
            for status, response in operation.get("responses", {}).items()
        ]
        for parameter in operation.get("parameters", []):
            for index, example in enumerate(parameter.get("schema", {}).get("examples", [])):
                where = f"{method} {path} parameter {parameter['name']}[{index}]"
                found.append((where, parameter["schema"], example))
        for where, content in contents:
            for media, body in content.items():
                label = f"{method} {path} {where} {media}"
                if "example" in body:
                    found.append((label, body["schema"], body["example"]))
                for key, named in body.get("examples", {}).items():
                    found.append((f"{label} {key}", body["schema"], named["value"]))
    return found


@pytest.mark.parametrize("slug", SLUGS)
def test_every_example_matches_its_schema(slug: str) -> None:
    document = generated()[slug]
    components = document.get("components", {})
    examples = _examples(document)
    assert examples, f"{slug} has no example"
    failures = []
    for where, schema, example in examples:
        validator = Draft202012Validator({"components": components, "allOf": [schema]})
        errors = [error.message for error in validator.iter_errors(example)]
        if errors:
            failures.append(f"{where}: {errors[0]}")
    assert not failures, "\n".join(failures)


def _schemas(slug: str) -> dict[str, Any]:
    schemas: dict[str, Any] = generated()[slug]["components"]["schemas"]
    return schemas


def _validator(slug: str, name: str) -> Draft202012Validator:
    components = generated()[slug]["components"]
    return Draft202012Validator({"components": components, "$ref": f"#/components/schemas/{name}"})


def test_degraded_names_each_views_sections() -> None:
    def sections(slug: str, view: str) -> list[str]:
        items: list[str] = _schemas(slug)[view]["properties"]["degraded"]["items"]["enum"]
        return items

    assert sections("web-v1", "DashboardView") == [
        "watchlists", "quotes", "sparklines", "orders", "bots", "news",
    ]  # fmt: skip
    assert "sectors" in sections("web-v2", "DashboardView")
    assert sections("web-v1", "SymbolDetailView") == [
        "info", "candles", "news", "position", "orders",
    ]  # fmt: skip
    assert sections("mobile-v1", "HomeView") == ["quotes", "orders", "bots"]


@pytest.mark.parametrize(("slug", "name"), [("web-v1", ""), ("partner-v1", "Partner")])
def test_an_order_request_is_a_union_discriminated_by_type(slug: str, name: str) -> None:
    union = _schemas(slug)[f"{name}OrderRequest"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == {"market", "limit", "stop", "stop_limit"}
    validator = _validator(slug, f"{name}OrderRequest")
    base = {"symbol": "AAPL", "side": "buy", "quantity": 10}
    if name:
        base["account_id"] = "ACC-2001"
    valid = [
        {**base, "type": "market"},
        {**base, "type": "limit", "limit_price": 187.5},
        {**base, "type": "stop", "stop_price": 180.0},
        {**base, "type": "stop_limit", "stop_price": 180.0, "limit_price": 179.0},
    ]
    invalid = [
        {**base, "type": "limit"},  # no limit price
        {**base, "type": "market", "limit_price": 187.5},  # a price a market order refuses
        {**base, "type": "stop_limit", "stop_price": 180.0},
        {**base, "type": "trailing"},
    ]
    for order in valid:
        assert validator.is_valid(order), order
    for order in invalid:
        assert not validator.is_valid(order), order


async def test_the_order_rules_answer_as_before(
    gateway: RunningGateway, platform: Platform
) -> None:
    """The schema split changes no answer: the problem still names the missing price, and it
    matches the 422 the document declares."""
    headers = {**await bearer_headers(platform, username="alice"), "Idempotency-Key": "doc-422-1"}
    order = {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 1}
    response = await gateway.client.post("/web/v1/orders", json=order, headers=headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["errors"] == [
        {"field": "body.limit_price", "message": "limit_price is required for limit orders"}
    ]
    declared = generated()["web-v1"]["paths"]["/web/v1/orders"]["post"]["responses"]["422"]
    ref = declared["content"]["application/problem+json"]["schema"]["$ref"]
    assert _validator("web-v1", ref.rsplit("/", 1)[1]).is_valid(problem)


def _gateway_errors() -> list[type[GatewayError]]:
    found, pending = [], [GatewayError]
    while pending:
        error = pending.pop()
        found.append(error)
        pending += error.__subclasses__()
    return found


def test_every_problem_type_is_in_the_catalogue() -> None:
    import app.main  # noqa: F401  (every module that defines an error)

    slugs = {error.slug for error in _gateway_errors()}
    assert slugs <= PROBLEM_TYPES.keys(), slugs - PROBLEM_TYPES.keys()
    for slug, kind in PROBLEM_TYPES.items():
        assert kind.model.model_json_schema()["properties"]["type"]["const"] == f"/problems/{slug}"


@pytest.mark.parametrize("slug", SLUGS)
def test_error_responses_are_typed_per_status(slug: str) -> None:
    document = generated()[slug]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            content = response["content"]["application/problem+json"]
            example = content["example"]
            assert example["status"] == int(status), f"{method} {path} {status}"
            assert example["type"] in {k.uri for k in problems_for(int(status))}
            assert content["schema"]["$ref"] != "#/components/schemas/Problem"


async def test_every_problem_type_resolves_to_its_page(gateway: RunningGateway) -> None:
    uris = {
        schema["properties"]["type"]["const"]
        for slug in SLUGS
        for schema in _schemas(slug).values()
        if "const" in schema.get("properties", {}).get("type", {})
        and str(schema["properties"]["type"]["const"]).startswith("/problems/")
    }
    assert "/problems/validation-error" in uris
    for uri in uris:
        page = await gateway.client.get(uri)
        assert page.status_code == 200, uri
        assert page.headers["content-type"].startswith("text/html")
        assert html.escape(PROBLEM_TYPES[uri.removeprefix("/problems/")].title) in page.text
    validation = await gateway.client.get("/problems/validation-error")
    assert "<code>errors</code>" in validation.text
    catalogue = await gateway.client.get("/problems")
    assert all(uri in catalogue.text for uri in uris)
    unknown = await gateway.client.get("/problems/nope")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("slug", SLUGS)
def test_servers_are_declared(slug: str) -> None:
    assert generated()[slug]["servers"][0]["url"] == "/"


def test_cookie_authenticated_unsafe_operations_declare_the_csrf_header() -> None:
    post = generated()["web-v1"]["paths"]["/web/v1/orders"]["post"]
    assert any(p["name"] == "X-CSRF-Token" and p["in"] == "header" for p in post["parameters"])
    get = generated()["web-v1"]["paths"]["/web/v1/dashboard"]["get"]
    assert all(p["name"] != "X-CSRF-Token" for p in get.get("parameters", []))
    partner = generated()["partner-v1"]["paths"]["/partner/v1/orders"]["post"]
    assert all(p["name"] != "X-CSRF-Token" for p in partner.get("parameters", []))


async def test_openid_connect_sits_next_to_bearer(gateway: RunningGateway) -> None:
    document = generated()["web-v1"]
    scheme = document["components"]["securitySchemes"]["OpenIdConnect"]
    assert scheme["type"] == "openIdConnect"
    dashboard = document["paths"]["/web/v1/dashboard"]["get"]
    names = [name for need in dashboard["security"] for name in need]
    assert "BearerToken" in names and "OpenIdConnect" in names
    discovery = await gateway.client.get(scheme["openIdConnectUrl"])
    assert discovery.status_code == 200
    assert discovery.json()["authorization_endpoint"].startswith("http")
    assert "S256" in discovery.json()["code_challenge_methods_supported"]


def test_enum_values_starting_with_digits_have_names() -> None:
    assert _schemas("web-v1")["ChartRange"]["x-enum-varnames"] == [
        "d1", "d5", "mo1", "mo3", "mo6", "y1",
    ]  # fmt: skip
    interval = _schemas("partner-v1")["CandleInterval"]
    assert interval["x-enum-varnames"][0] == "one_minute"


def test_the_order_id_is_order_id_in_every_frontend() -> None:
    for slug, view in (("web-v1", "OrderView"), ("partner-v1", "PartnerOrder")):
        assert "order_id" in _schemas(slug)[view]["required"]
    placed = _schemas("mobile-v1")["PlacedOrderView"]
    assert "order_id" in placed["required"]
    # The old name stays, marked deprecated, while clients move (the versioning rules).
    assert placed["properties"]["id"]["deprecated"] is True

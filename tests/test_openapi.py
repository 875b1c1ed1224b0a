"""The OpenAPI documents: committed = generated = served, and each operation fully described."""

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from app.main import DOCUMENTS
from app.openapi_export import OPENAPI_DIR, generated_documents, main
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

"""One error shape for everything: RFC 9457 problem+json with the request id."""

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.responses import StreamingResponse

from app.openapi_export import generated_documents
from tests.fixtures.gateway import RunningGateway

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
AUTH = {"Authorization": "Bearer test-admin-token"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert set(problem) >= PROBLEM_FIELDS, problem
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert problem["title"] and problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


async def test_unknown_path_is_a_404_problem(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/web/v1/no-such-thing", params={"x": "1"})
    problem = assert_problem(response, 404)
    assert problem["instance"] == "/web/v1/no-such-thing"
    assert problem["type"] == "/problems/not-found"


async def test_the_clients_request_id_names_the_problem(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/nowhere", headers={"X-Request-ID": "err-trace-42"})
    problem = assert_problem(response, 404)
    assert problem["request_id"] == "err-trace-42"
    assert problem["instance"] == "/nowhere"


async def test_wrong_method_is_a_405_problem(gateway: RunningGateway) -> None:
    response = await gateway.client.delete("/healthz")
    problem = assert_problem(response, 405)
    assert problem["instance"] == "/healthz"
    assert problem["type"] == "/problems/method-not-allowed"
    assert "GET" in response.headers["allow"]


async def test_validation_errors_name_each_field(gateway: RunningGateway) -> None:
    response = await gateway.client.post(
        "/admin/v1/services",
        json={"name": "Not Valid", "timeout_ms": "soon", "instances": [{"url": "ftp://x"}]},
        headers=AUTH,
    )
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/validation-error"
    assert problem["instance"] == "/admin/v1/services"
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {"body.name", "body.timeout_ms", "body.instances.0.url"}
    assert all(isinstance(m, str) and m for m in fields.values())
    assert "scheme must be http or https" in fields["body.instances.0.url"]
    for field in fields:
        assert field in problem["detail"]


async def test_malformed_json_is_a_400_problem(gateway: RunningGateway) -> None:
    response = await gateway.client.post(
        "/admin/v1/services",
        content=b'{"name": "half',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 400)
    assert problem["type"] == "/problems/malformed-body"
    assert "not JSON" in problem["detail"] and "character" in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == ["body"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[_Records]:
    # The gateway's loggers do not propagate to the root, so listen on the error logger.
    records = _Records()
    logger = logging.getLogger("gateway.errors")
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)


class Explosion(RuntimeError):
    """What no handler of the gateway knows."""


async def _explode() -> None:
    raise Explosion("the handler failed")


async def _explode_midway() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"half of it"
        raise Explosion("the stream failed")

    return StreamingResponse(chunks())


async def test_an_unhandled_error_is_a_500_problem_named_by_the_request_id(
    gateway: RunningGateway, error_log: _Records
) -> None:
    # A route only this test has: the gateway has none that fails on purpose.
    gateway.app.add_api_route("/test-only/explode", _explode)
    for accept_encoding in ("gzip", "identity"):
        request_id = f"boom-{accept_encoding}"
        response = await gateway.client.get(
            "/test-only/explode",
            headers={"X-Request-ID": request_id, "Accept-Encoding": accept_encoding},
        )
        problem = assert_problem(response, 500)
        assert response.headers["x-request-id"] == request_id
        assert response.headers["x-content-type-options"] == "nosniff"
        assert problem["type"] == "/problems/internal-error"
        assert problem["instance"] == "/test-only/explode"
        assert "the handler failed" not in response.text
        (record,) = [r for r in error_log.records if request_id in r.getMessage()]
        assert "/test-only/explode" in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is Explosion
    assert len(error_log.records) == 2


async def test_an_error_after_the_response_started_cuts_it_short_and_is_logged(
    gateway: RunningGateway, error_log: _Records
) -> None:
    gateway.app.add_api_route("/test-only/explode-midway", _explode_midway)
    with pytest.raises(httpx.RemoteProtocolError):
        await gateway.client.get("/test-only/explode-midway", headers={"X-Request-ID": "midway"})
    (record,) = error_log.records
    assert "midway" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is Explosion
    # The gateway still answers.
    assert (await gateway.client.get("/healthz")).status_code == 200


async def test_a_body_that_is_not_utf8_is_a_400_problem(gateway: RunningGateway) -> None:
    # "café" in Latin-1: the JSON is well formed but its bytes are not UTF-8.
    response = await gateway.client.post(
        "/admin/v1/services",
        content='{"name": "caf\u00e9"}'.encode("latin-1"),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 400)
    assert problem["type"] == "/problems/malformed-body"
    assert "not UTF-8" in problem["detail"] and "0xe9" in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == ["body"]


async def test_json_that_breaks_the_schema_stays_a_422(gateway: RunningGateway) -> None:
    response = await gateway.client.post(
        "/admin/v1/services",
        content=b'{"name": 7}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/validation-error"
    assert [error["field"] for error in problem["errors"]] == ["body.name"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/admin/v1/services", "GET, POST"),
        ("DELETE", "/web/v1/orders", "GET, POST"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    gateway: RunningGateway, method: str, path: str, allowed: str
) -> None:
    response = await gateway.client.request(method, path, headers=AUTH)

    problem = assert_problem(response, 405)
    assert response.headers["allow"] == allowed
    assert method in problem["detail"] and allowed in problem["detail"]


def test_every_document_describes_malformed_and_invalid_bodies_as_problems() -> None:
    for name, text in generated_documents().items():
        document = json.loads(text)
        schemas = document["components"]["schemas"]
        assert "HTTPValidationError" not in schemas, name
        for path, item in document["paths"].items():
            for method, operation in item.items():
                responses = operation["responses"]
                where = f"{name}: {method.upper()} {path}"
                if "requestBody" in operation:
                    assert {"400", "422"} <= set(responses), where
                for status in {"400", "422"} & set(responses):
                    content = responses[status]["content"]
                    # Only problem+json, typed for its status, with an example of that status.
                    assert set(content) == {"application/problem+json"}, where
                    problem = content["application/problem+json"]
                    assert problem["schema"] == {"$ref": f"#/components/schemas/Problem{status}"}
                    assert f"Problem{status}" in schemas, where
                    assert problem["example"]["status"] == int(status), where

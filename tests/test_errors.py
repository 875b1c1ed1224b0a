"""One error shape for everything: RFC 9457 problem+json with the request id."""

from typing import Any

import httpx

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


async def test_malformed_json_is_a_422_problem(gateway: RunningGateway) -> None:
    response = await gateway.client.post(
        "/admin/v1/services",
        content=b'{"name": "half',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"].startswith("body")

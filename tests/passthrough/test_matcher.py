"""The compiled route table: templates with parameters, prefixes, methods, host and header
conditions, and which route wins when several match."""

from typing import Any

from starlette.datastructures import Headers

from app.passthrough.matcher import RouteTable
from app.store.route_declarations import RouteDeclaration
from app.store.snapshot import RouteConfig


def _route(route_id: int, **match: Any) -> RouteConfig:
    declaration = RouteDeclaration.model_validate(
        {"name": f"route-{route_id}", "match": match, "upstream": {"service": "echo"}}
    )
    return RouteConfig(route_id=route_id, declaration=declaration)


def _match(
    table: RouteTable, path: str, *, method: str = "GET", host: str = "gw", **headers: str
) -> tuple[int | None, dict[str, str], str, frozenset[str]]:
    matched, allowed = table.match(method=method, path=path, host=host, headers=Headers(headers))
    if matched is None:
        return None, {}, "", allowed
    return matched.route.route_id, matched.parameters, matched.rest, allowed


def test_template_parameters_and_literal_precedence() -> None:
    table = RouteTable(
        [
            _route(1, path="/orders/{order_id}"),
            _route(2, path="/orders/open"),
            _route(3, path="/accounts/{account}/orders/{order_id}"),
        ]
    )
    assert _match(table, "/orders/open")[:2] == (2, {})
    assert _match(table, "/orders/42")[:2] == (1, {"order_id": "42"})
    assert _match(table, "/accounts/ACC-1/orders/9")[:2] == (
        3,
        {"account": "ACC-1", "order_id": "9"},
    )
    assert _match(table, "/orders")[0] is None
    assert _match(table, "/orders/42/extra")[0] is None


def test_prefixes_longest_first_and_templates_before_prefixes() -> None:
    table = RouteTable(
        [
            _route(1, path_prefix="/files"),
            _route(2, path_prefix="/files/private"),
            _route(3, path="/files/{name}"),
        ]
    )
    assert _match(table, "/files/private/x/y")[:3] == (2, {}, "/x/y")
    assert _match(table, "/files/a/b")[:3] == (1, {}, "/a/b")
    assert _match(table, "/files/a")[:2] == (3, {"name": "a"})
    assert _match(table, "/files")[:3] == (1, {}, "")
    # A prefix matches whole segments only.
    assert _match(table, "/filesystem")[0] is None


def test_methods_host_and_headers() -> None:
    table = RouteTable(
        [
            _route(1, path="/quotes", methods=["POST"]),
            _route(2, path="/quotes", methods=["GET"], host="*.example.com"),
            _route(3, path="/quotes", methods=["GET"], headers={"X-Version": "2"}),
            _route(4, path="/quotes", methods=["GET"]),
        ]
    )
    assert _match(table, "/quotes", method="POST")[0] == 1
    assert _match(table, "/quotes", host="api.example.com")[0] == 2
    assert _match(table, "/quotes", host="other.org", **{"x-version": "2"})[0] == 3
    assert _match(table, "/quotes", host="other.org")[0] == 4
    # GET also takes HEAD; DELETE is taken by none: the methods that would be are named.
    assert _match(table, "/quotes", method="HEAD", host="api.example.com")[0] == 2
    route_id, _, _, allowed = _match(table, "/quotes", method="DELETE")
    assert route_id is None
    assert allowed == {"GET", "HEAD", "POST"}


def test_a_thousand_routes_still_find_each_one() -> None:
    routes = [_route(i, path=f"/svc-{i}/items/{{item}}") for i in range(1, 1001)]
    table = RouteTable(routes)
    for i in (1, 500, 1000):
        assert _match(table, f"/svc-{i}/items/x")[:2] == (i, {"item": "x"})

"""Which FastAPI routes `app.frontends.direct` answers itself, and with which exception
handler; that a direct answer is FastAPI's is tested on partner quotes
(`tests/frontends/partner/v1/test_quotes.py`)."""

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.deps import MarketDataDep, require_partner
from app.errors import GatewayError, NotFound
from app.frontends.direct import ExceptionHandlers, direct_routes
from app.frontends.routing import FrontendRouter
from app.frontends.symbols import SymbolList
from app.main import create_app


class Body(BaseModel):
    value: int


async def quotes(symbols: SymbolList, request: Request) -> Response:
    return Response()


async def with_client(symbols: SymbolList, market_data: MarketDataDep) -> Response:
    return Response()


async def with_path(symbol: str) -> Response:
    return Response()


async def as_model() -> Body:
    return Body(value=1)


async def the_request_alone(request: Request) -> str:
    return "thing"


async def with_request_dependency(
    thing: Annotated[str, Depends(the_request_alone)], symbols: SymbolList
) -> Body:
    return Body(value=len(thing))


async def nested(thing: Annotated[str, Depends(the_request_alone)]) -> str:
    return thing


async def with_nested_dependency(thing: Annotated[str, Depends(nested)]) -> Response:
    return Response()


def generated() -> Any:
    yield "thing"


async def with_generated(thing: Annotated[str, Depends(generated)]) -> Response:
    return Response()


async def with_another_dependency(
    request: Request, x_thing: Annotated[str, Depends(lambda: "")]
) -> Response:
    return Response()


def _routes(build: Callable[[APIRouter], Any]) -> set[str]:
    router = FrontendRouter(prefix="/p/v1")
    build(router)
    app = FastAPI()
    app.include_router(router)
    return set(direct_routes(app.routes))


RULE = [require_partner("quotes:read")]


def test_the_gateway_answers_its_hot_reads_directly_under_their_rules() -> None:
    routes = direct_routes(create_app().routes)
    assert {
        "/partner/v1/quotes",
        "/partner/v1/candles/{symbol}",
        "/web/v1/dashboard",
        "/web/v2/dashboard",
        "/mobile/v1/home",
    } <= set(routes)
    # Placing an order is never one (a POST), nor a list that reads its format from a header.
    assert not any("orders" in template for template in routes)
    dashboard = routes["/web/v1/dashboard"]
    assert dashboard.rule.scopes == ("read",)
    assert [name for name, _ in dashboard.dependencies] == ["services", "account_id"]
    # A view, serialized as FastAPI serializes it; version 1 is superseded: its answers
    # carry its successor, which version 2's do not.
    assert dashboard.serialize is not None and dashboard.finish is not None
    assert routes["/web/v2/dashboard"].finish is None
    quotes, candles = routes["/partner/v1/quotes"], routes["/partner/v1/candles/{symbol}"]
    assert quotes.rule.scopes == ("quotes:read",)
    assert [field.alias for field in quotes.query] == ["symbols"]
    assert candles.rule.scopes == ("candles:read",)
    assert [field.alias for field in candles.path] == ["symbol"]
    assert [field.alias for field in candles.query] == ["interval", "range"]
    # No route before candles might take a GET of its paths.
    assert candles.earlier == ()
    assert candles.path_params("/partner/v1/candles/AAPL") == {"symbol": "AAPL"}
    assert candles.path_params("/partner/v1/candles/AAPL/x") is None
    # Plain parameters all: read without `request_params_to_args`, located as it locates.
    assert quotes.query_readers is not None and candles.path_readers is not None
    assert [reader.loc for reader in quotes.query_readers] == [("query", "symbols")]
    assert candles.query_readers is not None
    assert [reader.loc for reader in candles.query_readers] == [
        ("query", "interval"),
        ("query", "range"),
    ]


async def with_list(request: Request, symbol: Annotated[list[str], Query()]) -> Response:
    return Response()


def test_a_parameter_with_several_values_is_read_by_fastapis_own_function() -> None:
    router = FrontendRouter(prefix="/p/v1")
    router.get("/quotes", dependencies=RULE)(with_list)
    app = FastAPI()
    app.include_router(router)
    route = direct_routes(app.routes)["/p/v1/quotes"]
    assert route.query_readers is None


def test_a_rule_path_and_query_parameters_and_the_request_qualify() -> None:
    assert _routes(lambda r: r.get("/quotes", dependencies=RULE)(quotes)) == {"/p/v1/quotes"}
    assert _routes(lambda r: r.get("/candles/{symbol}", dependencies=RULE)(with_path)) == {
        "/p/v1/candles/{symbol}"
    }


def test_dependencies_of_the_request_alone_and_a_response_model_qualify() -> None:
    assert _routes(lambda r: r.get("/model", dependencies=RULE)(as_model)) == {"/p/v1/model"}
    assert _routes(lambda r: r.get("/view", dependencies=RULE)(with_request_dependency)) == {
        "/p/v1/view"
    }
    # A service client is one (`app.deps`).
    assert _routes(lambda r: r.get("/quotes", dependencies=RULE)(with_client)) == {"/p/v1/quotes"}


@pytest.mark.parametrize(
    "build",
    [
        # No access rule: nothing to run before the endpoint is no reason to skip FastAPI.
        lambda r: r.get("/quotes")(quotes),
        # Two rules.
        lambda r: r.get("/quotes", dependencies=[*RULE, require_partner("candles:read")])(quotes),
        # A dependency with dependencies of its own, a plain function, one with `yield`.
        lambda r: r.get("/quotes", dependencies=RULE)(with_nested_dependency),
        lambda r: r.get("/quotes", dependencies=RULE)(with_another_dependency),
        lambda r: r.get("/quotes", dependencies=RULE)(with_generated),
        # A dependency before the rule: FastAPI would run it first.
        lambda r: r.get("/view", dependencies=[Depends(the_request_alone), *RULE])(quotes),
        # A response model with a response class of its own, or another status.
        lambda r: r.get("/quotes", dependencies=RULE, response_class=HTMLResponse)(as_model),
        lambda r: r.get("/quotes", dependencies=RULE, status_code=203)(as_model),
        # Not a GET.
        lambda r: r.post("/quotes", dependencies=RULE)(quotes),
    ],
)
def test_anything_more_leaves_the_route_to_fastapi(build: Callable[[APIRouter], Any]) -> None:
    assert _routes(build) == set()


def test_a_route_behind_one_that_takes_its_path_is_left_to_fastapi() -> None:
    def build(router: APIRouter) -> None:
        router.get("/{anything}", dependencies=RULE)(with_path)
        router.get("/quotes", dependencies=RULE)(quotes)

    # The template before it takes `/p/v1/quotes`, and is answered directly itself.
    assert _routes(build) == {"/p/v1/{anything}"}


def test_a_template_knows_the_routes_before_it_that_might_take_its_paths() -> None:
    app = FastAPI()
    router = FrontendRouter(prefix="/p/v1")
    router.get("/candles/special", dependencies=RULE)(as_model)
    router.get("/quotes", dependencies=RULE)(quotes)
    router.post("/candles/new", dependencies=RULE)(quotes)
    router.get("/candles/{symbol}", dependencies=RULE)(with_path)
    app.include_router(router)
    candles = direct_routes(app.routes)["/p/v1/candles/{symbol}"]
    # Only the GET whose path starts as the template's might take one of its paths; the
    # router gives it that path, so the direct route does not take it.
    assert [pattern.pattern for pattern in candles.earlier] == ["^/p/v1/candles/special$"]
    assert candles.path_params("/p/v1/candles/special") is None
    assert candles.path_params("/p/v1/candles/AAPL") == {"symbol": "AAPL"}


def test_the_first_of_two_routes_at_one_path_is_the_direct_one() -> None:
    def build(router: APIRouter) -> None:
        router.post("/quotes", dependencies=RULE)(quotes)
        router.get("/quotes", dependencies=RULE)(quotes)

    assert _routes(build) == {"/p/v1/quotes"}


async def _handler(request: Request, exc: Exception) -> Response:
    return Response()


async def _status_handler(request: Request, exc: Exception) -> Response:
    return Response()


async def _gateway_handler(request: Request, exc: Exception) -> Response:
    return Response()


def test_exceptions_find_their_handler_as_starlette_finds_it() -> None:
    handlers = ExceptionHandlers(
        {
            Exception: _handler,
            500: _handler,
            404: _status_handler,
            HTTPException: _handler,
            GatewayError: _gateway_handler,
        }
    )
    assert handlers.for_error(HTTPException(404)) is _status_handler
    assert handlers.for_error(HTTPException(400)) is _handler
    assert handlers.for_error(NotFound("gone")) is _gateway_handler
    # What no handler takes goes on to the edge (a 500 there), as from FastAPI's route.
    assert handlers.for_error(ValueError("bug")) is None
    assert handlers.for_error(HTTPException(500)) is _handler

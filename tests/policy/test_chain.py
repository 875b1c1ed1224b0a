"""The policy chain called directly, as the entry points outside FastAPI call it, gives the
same 401/403/429 outcomes as the equivalent HTTP request through a FastAPI route."""

from collections.abc import AsyncIterator, Mapping

import pytest
from fastapi import FastAPI

from app.errors import Forbidden, GatewayError, TooManyRequests, Unauthorized
from app.main import create_app
from app.policy.chain import PolicyChain
from app.policy.context import RequestContext
from app.security.rbac import partner_rule, user_rule
from app.settings import RateLimitSettings, Settings
from app.state import GatewayState
from app.traffic.deadline import Deadline
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import bearer_headers

QUOTES = "/partner/v1/quotes"
DASHBOARD = "/web/v1/dashboard"


@pytest.fixture
def limited(settings: Settings) -> Settings:
    limits = RateLimitSettings(anonymous_limit=2, anonymous_period_s=600)
    return settings.model_copy(update={"rate_limit": limits})


@pytest.fixture
async def chain(limited: Settings) -> AsyncIterator[PolicyChain]:
    """The chain of a second gateway process on the same config store, built by its lifespan
    and used without FastAPI's routing or dependency solving."""
    app: FastAPI = create_app(limited)
    async with app.router.lifespan_context(app) as lifespan_state:
        state: GatewayState = lifespan_state["gateway"]  # type: ignore[index]
        yield state.chain


def _context(path: str, headers: Mapping[str, str], *, address: str) -> RequestContext:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (address, 50000),
    }
    return RequestContext.of_scope(scope, deadline=Deadline.after_ms(5000), request_id="test")


async def _direct_status(
    chain: PolicyChain, path: str, headers: Mapping[str, str], *, address: str
) -> int:
    rule = partner_rule("quotes:read") if path == QUOTES else user_rule("read")
    try:
        await chain.run(_context(path, headers, address=address), rule)
    except GatewayError as refusal:
        return refusal.status
    return 200


async def test_the_same_refusals_with_and_without_fastapi(
    limited: Settings, chain: PolicyChain, platform: Platform
) -> None:
    async with running_gateway(limited) as gateway:
        no_scope = await create_partner(gateway.client, scopes=("candles:read",))
        full = await create_partner(gateway.client)
        await chain._config.reload()  # the second process has seen the new consumers
        viewer_without_account = await bearer_headers(platform, client_id="partner-acme")
        cases: list[tuple[str, Mapping[str, str]]] = [
            (QUOTES, {"X-API-Key": "sbk_000000000000_" + "x" * 43}),  # not a key: 401
            (QUOTES, no_scope.headers),  # lacks quotes:read: 403
            (QUOTES, full.headers),  # admitted
            (DASHBOARD, full.headers),  # a partner on a user route: 403
            (DASHBOARD, viewer_without_account),  # a client token on a user route: 403
        ]
        over_http = []
        for path, headers in cases:
            response = await gateway.client.get(path, params=_params(path), headers=headers)
            over_http.append(response.status_code)
        direct = [
            await _direct_status(chain, path, headers, address="192.0.2.10")
            for path, headers in cases
        ]
        assert over_http == [401, 403, 200, 403, 403]
        assert direct == over_http


async def test_anonymous_calls_are_counted_and_refused_alike(
    limited: Settings, chain: PolicyChain
) -> None:
    async with running_gateway(limited) as gateway:
        over_http = [(await gateway.client.get(DASHBOARD)).status_code for _ in range(3)]
    direct = [await _direct_status(chain, DASHBOARD, {}, address="192.0.2.20") for _ in range(3)]
    assert over_http == [401, 401, 429]
    assert direct == over_http


async def test_a_bad_credential_counts_against_the_address(chain: PolicyChain) -> None:
    garbage = {"X-API-Key": "not-a-key"}
    errors: list[type[GatewayError]] = []
    for _ in range(3):
        try:
            await chain.run(_context(QUOTES, garbage, address="192.0.2.30"), partner_rule())
        except GatewayError as refusal:
            errors.append(type(refusal))
    assert errors == [Unauthorized, Unauthorized, TooManyRequests]


async def test_each_stage_runs_once_per_request(chain: PolicyChain, platform: Platform) -> None:
    headers = await bearer_headers(platform, username="bob")  # a viewer
    context = _context(DASHBOARD, headers, address="192.0.2.40")
    outcome = await chain.run(context, user_rule("read"))
    assert outcome.principal.subject == context.principal.subject  # type: ignore[union-attr]
    admission = context.admission
    # A second rule on the same request (a route and its router both declare one) is not
    # admitted again: the same admission stands, and the refusal is authorization's.
    with pytest.raises(Forbidden):
        await chain.run(context, user_rule("orders"))
    assert context.admission is admission


def _params(path: str) -> dict[str, str]:
    return {"symbols": "AAPL"} if path == QUOTES else {}

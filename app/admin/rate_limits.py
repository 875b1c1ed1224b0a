"""Admin endpoints over the rate limit rules of the config store.

A rule limits the routes under a path prefix, counted per consumer, per consumer on a plan,
per user, per client address, or once for all callers of the route. Every rule accepted here
can be enforced (`app.policy.admission` never has to skip it), and a change is committed and
then published as a change notice, so every gateway process enforces it from the next request.
"""

import logging
from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.changes import ChangeNoticesDep, PolicyChainDep, stage_change
from app.admin.schemas import NAME_PATTERN, Patch, RowId, UtcDateTime
from app.deps import SessionDep
from app.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    problem_responses,
    validation_problem_errors,
)
from app.policy.chain import PolicyChain
from app.shared.redis import RedisUnavailable
from app.store.consumers import PlanRepository
from app.store.database import after_commit, stored_utc
from app.store.models import RateLimitRule
from app.store.rate_limit_rules import RateLimitRuleRepository

logger = logging.getLogger("gateway.admin")

router = APIRouter(prefix="/rate-limits", tags=["admin: traffic"])

# The values `app.policy.admission.RULE_KEYS` enforces; a test keeps the two the same.
KeyBy = Literal["consumer", "plan", "user", "address", "route"]

RuleName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        examples=["partner-quotes"],
        description="Unique; names the limit in `RateLimit-Policy` and in 429 problems",
    ),
]
RoutePrefix = Annotated[
    str,
    Field(
        pattern=r"^(/[^\s?#\x00-\x1f\x7f]*)?$",
        max_length=200,
        examples=["/partner/v1/quotes"],
        description='Path prefix of the routes the rule limits; "" for every route',
    ),
]
PlanName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        examples=["partner-basic"],
        description="The plan whose consumers are limited (each on its own); only with key_by plan",
    ),
]
Limit = Annotated[StrictInt, Field(ge=1, le=10_000_000, description="Requests per period")]
PeriodS = Annotated[StrictFloat, Field(gt=0, le=86_400, description="The period, in seconds")]
Burst = Annotated[
    StrictInt,
    Field(ge=1, le=10_000_000, description="Requests admitted at once; the limit when null"),
]

_RULE_EXAMPLE: dict[str, Any] = {
    "name": "partner-quotes",
    "key_by": "consumer",
    "route_prefix": "/partner/v1/quotes",
    "plan_name": None,
    "limit": 20,
    "period_s": 1,
    "burst": 40,
    "enabled": True,
}


class RateLimitRuleCreate(BaseModel):
    """A new rule: `limit` requests per `period_s` seconds on the routes under `route_prefix`,
    counted separately for each value of `key_by` (one count for all callers with `route`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_RULE_EXAMPLE]})

    name: RuleName
    key_by: KeyBy
    route_prefix: RoutePrefix = ""
    plan_name: PlanName | None = None
    limit: Limit
    period_s: PeriodS
    burst: Burst | None = None
    enabled: StrictBool = True


class RateLimitRuleUpdate(Patch):
    """Fields to change; omitted fields stay. `plan_name` and `burst` may be null."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    # Null would erase a value every rule needs, except these.
    clearable = frozenset({"plan_name", "burst"})

    name: RuleName | None = None
    key_by: KeyBy | None = None
    route_prefix: RoutePrefix | None = None
    plan_name: PlanName | None = None
    limit: Limit | None = None
    period_s: PeriodS | None = None
    burst: Burst | None = None
    enabled: StrictBool | None = None


class RateLimitRuleView(BaseModel):
    """A rate limit rule."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"rule_id": 3, **_RULE_EXAMPLE, "created_at": "2026-11-26T10:40:00Z"},
            ]
        }
    )

    rule_id: int
    name: str
    key_by: str
    route_prefix: str
    plan_name: str | None
    limit: int
    period_s: float
    burst: int | None
    enabled: bool
    created_at: UtcDateTime

    @classmethod
    def of(cls, rule: RateLimitRule) -> "RateLimitRuleView":
        created_at = stored_utc(rule.created_at)
        assert created_at is not None
        return cls(
            rule_id=rule.rule_id,
            name=rule.name,
            key_by=rule.key_by,
            route_prefix=rule.route_prefix,
            plan_name=rule.plan_name or None,
            limit=rule.limit,
            period_s=rule.period_s,
            burst=rule.burst,
            enabled=rule.enabled,
            created_at=created_at,
        )


class RateLimitRuleList(BaseModel):
    rules: list[RateLimitRuleView]


def _invalid(errors: list[dict[str, str]]) -> InvalidRequest:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidRequest(detail, extra={"errors": errors})


async def _enforceable(session: AsyncSession, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The columns to store, or a 422 naming each field that would make the rule unusable."""
    try:
        rule = RateLimitRuleCreate.model_validate(fields)
    except ValidationError as exc:
        errors = validation_problem_errors(exc.errors())
        raise _invalid([{**e, "field": f"body.{e['field']}"} for e in errors]) from None
    message = None
    if rule.key_by == "plan" and rule.plan_name is None:
        message = "required when key_by is plan"
    elif rule.key_by != "plan" and rule.plan_name is not None:
        message = "only a rule with key_by plan names a plan; send null"
    elif (
        rule.plan_name is not None and await PlanRepository(session).by_name(rule.plan_name) is None
    ):
        message = f"no plan named {rule.plan_name!r} exists"
    if message is not None:
        raise _invalid([{"field": "body.plan_name", "message": message}])
    # The table keeps "" for "no plan".
    return {**rule.model_dump(), "plan_name": rule.plan_name or ""}


async def _rule(repo: RateLimitRuleRepository, rule_id: int) -> RateLimitRule:
    rule = await repo.by_id(rule_id)
    if rule is None:
        raise NotFound(f"No rate limit rule with id {rule_id} exists.")
    return rule


async def _refuse_duplicate_name(
    repo: RateLimitRuleRepository, name: str, *, except_id: int | None = None
) -> None:
    existing = await repo.by_name(name)
    if existing is not None and existing.rule_id != except_id:
        raise Conflict(
            f"A rate limit rule named {name!r} already exists.",
            extra={"rule_id": existing.rule_id},
        )


@router.get("", response_model=RateLimitRuleList)
async def list_rate_limit_rules(session: SessionDep) -> RateLimitRuleList:
    """Every rate limit rule, enabled or not, oldest first."""
    rules = await RateLimitRuleRepository(session).all()
    return RateLimitRuleList(rules=[RateLimitRuleView.of(r) for r in rules])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RateLimitRuleView,
    responses=problem_responses(409),
)
async def create_rate_limit_rule(
    body: RateLimitRuleCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    notices: ChangeNoticesDep,
) -> RateLimitRuleView:
    """Create a rate limit rule; every gateway process enforces it at once."""
    fields = await _enforceable(session, body.model_dump())
    repo = RateLimitRuleRepository(session)
    await _refuse_duplicate_name(repo, body.name)
    rule = RateLimitRule(**fields)
    try:
        await repo.add(rule)
    except IntegrityError as exc:
        raise Conflict(f"A rate limit rule named {body.name!r} already exists.") from exc
    await stage_change(session, notices)
    response.headers["Location"] = request.url_for("get_rate_limit_rule", rule_id=rule.rule_id).path
    return RateLimitRuleView.of(rule)


@router.get("/{rule_id}", response_model=RateLimitRuleView)
async def get_rate_limit_rule(rule_id: RowId, session: SessionDep) -> RateLimitRuleView:
    """One rate limit rule."""
    return RateLimitRuleView.of(await _rule(RateLimitRuleRepository(session), rule_id))


@router.patch("/{rule_id}", response_model=RateLimitRuleView, responses=problem_responses(409))
async def update_rate_limit_rule(
    rule_id: RowId, body: RateLimitRuleUpdate, session: SessionDep, notices: ChangeNoticesDep
) -> RateLimitRuleView:
    """Change a rule, or switch it off and on with `enabled`; effective at once."""
    repo = RateLimitRuleRepository(session)
    rule = await _rule(repo, rule_id)
    stored = RateLimitRuleView.of(rule).model_dump(exclude={"rule_id", "created_at"})
    fields = await _enforceable(session, {**stored, **body.model_dump(exclude_unset=True)})
    await _refuse_duplicate_name(repo, fields["name"], except_id=rule_id)
    try:
        await repo.update(rule, fields)
    except IntegrityError as exc:
        raise Conflict(f"A rate limit rule named {fields['name']!r} already exists.") from exc
    await stage_change(session, notices)
    return RateLimitRuleView.of(rule)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_rate_limit_rule(
    rule_id: RowId, session: SessionDep, notices: ChangeNoticesDep, chain: PolicyChainDep
) -> Response:
    """Delete a rate limit rule; no gateway process enforces it any more, and its counts are
    deleted with it."""
    repo = RateLimitRuleRepository(session)
    await repo.delete(await _rule(repo, rule_id))
    await stage_change(session, notices)
    after_commit(session, partial(_forget_counts, chain, rule_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _forget_counts(chain: PolicyChain, rule_id: int) -> None:
    try:
        await chain.admission.forget_rule(rule_id)
    except RedisUnavailable as exc:
        # Its id is never handed out again: counts left in Redis only wait for their expiry.
        logger.warning("could not delete the counts of rate limit rule %s: %s", rule_id, exc)

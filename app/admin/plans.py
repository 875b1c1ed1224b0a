"""Admin endpoints over plans: what a consumer may do (rates, quotas, scopes).

A change is committed by the request's session dependency and then published as a change
notice (`app.admin.changes`), so every gateway process serves the new plan right away.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from app.admin.changes import ChangeNoticesDep, stage_change
from app.admin.schemas import NAME_PATTERN, Patch, UtcDateTime
from app.deps import SessionDep
from app.errors import Conflict, NotFound, problem_responses
from app.store.consumers import PlanRepository
from app.store.models import INTEGER_MAX, Plan
from app.store.rate_limit_rules import RateLimitRuleRepository

router = APIRouter(prefix="/plans", tags=["admin: consumers"])

PartnerScope = Literal["quotes:read", "candles:read", "orders:write"]
PlanName = Annotated[str, Field(pattern=NAME_PATTERN, examples=["partner-basic"])]
# Every limit is a JSON number within what the limiters serve: the slowest rate is one
# request per 1000 s, so a rate's interval always fits a limit's period.
RatePerSecond = Annotated[
    StrictFloat, Field(ge=0.001, le=100_000, description="Sustained requests/s")
]
RatePerMinute = Annotated[StrictInt, Field(ge=1, le=6_000_000, description="Requests per minute")]
QuotaPerDay = Annotated[StrictInt, Field(ge=1, le=INTEGER_MAX, description="Requests per UTC day")]
QuotaPerMonth = Annotated[
    StrictInt, Field(ge=1, le=INTEGER_MAX, description="Requests per UTC calendar month")
]
MaxInFlight = Annotated[StrictInt, Field(ge=1, le=10_000, description="Concurrent requests")]

_PLAN_EXAMPLE: dict[str, Any] = {
    "name": "partner-basic",
    "rate_per_second": 5,
    "rate_per_minute": 200,
    "quota_per_day": 10000,
    "quota_per_month": 250000,
    "max_in_flight": 10,
    "scopes": ["quotes:read", "candles:read"],
}


class PlanCreate(BaseModel):
    """A new plan; omitted limits mean "no limit"."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_PLAN_EXAMPLE]})

    name: PlanName
    rate_per_second: RatePerSecond | None = None
    rate_per_minute: RatePerMinute | None = None
    quota_per_day: QuotaPerDay | None = None
    quota_per_month: QuotaPerMonth | None = None
    max_in_flight: MaxInFlight | None = None
    scopes: list[PartnerScope] = Field(default_factory=list, max_length=10)


class PlanUpdate(Patch):
    """Fields to change; null removes a limit, omitted fields stay as they are."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"quota_per_day": 20000}]})

    clearable = frozenset(
        {"rate_per_second", "rate_per_minute", "quota_per_day", "quota_per_month", "max_in_flight"}
    )

    rate_per_second: RatePerSecond | None = None
    rate_per_minute: RatePerMinute | None = None
    quota_per_day: QuotaPerDay | None = None
    quota_per_month: QuotaPerMonth | None = None
    max_in_flight: MaxInFlight | None = None
    scopes: list[PartnerScope] | None = Field(None, max_length=10)


class PlanView(BaseModel):
    """A plan."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"plan_id": 1, **_PLAN_EXAMPLE, "created_at": "2026-11-26T10:40:00Z"}]
        }
    )

    plan_id: int
    name: str
    rate_per_second: float | None
    rate_per_minute: int | None
    quota_per_day: int | None
    quota_per_month: int | None
    max_in_flight: int | None
    scopes: list[str]
    created_at: UtcDateTime

    @classmethod
    def of(cls, plan: Plan) -> "PlanView":
        return cls(
            plan_id=plan.plan_id,
            name=plan.name,
            rate_per_second=plan.rate_per_second,
            rate_per_minute=plan.rate_per_minute,
            quota_per_day=plan.quota_per_day,
            quota_per_month=plan.quota_per_month,
            max_in_flight=plan.max_in_flight,
            scopes=list(plan.scopes or []),
            created_at=plan.created_at,
        )


class PlanList(BaseModel):
    plans: list[PlanView]


async def plan_by_name(repo: PlanRepository, name: str) -> Plan:
    plan = await repo.by_name(name)
    if plan is None:
        raise NotFound(f"No plan named {name!r} exists.")
    return plan


@router.get("", response_model=PlanList)
async def list_plans(session: SessionDep) -> PlanList:
    """Every plan."""
    return PlanList(plans=[PlanView.of(p) for p in await PlanRepository(session).all()])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PlanView,
    responses=problem_responses(409),
)
async def create_plan(body: PlanCreate, session: SessionDep, notices: ChangeNoticesDep) -> PlanView:
    """Create a plan."""
    repo = PlanRepository(session)
    if await repo.by_name(body.name) is not None:
        raise Conflict(f"A plan named {body.name!r} already exists.")
    plan = Plan(**body.model_dump())
    await repo.add(plan)
    await stage_change(session, notices)
    return PlanView.of(plan)


@router.get("/{name}", response_model=PlanView)
async def get_plan(name: str, session: SessionDep) -> PlanView:
    """One plan."""
    return PlanView.of(await plan_by_name(PlanRepository(session), name))


@router.patch("/{name}", response_model=PlanView)
async def update_plan(
    name: str, body: PlanUpdate, session: SessionDep, notices: ChangeNoticesDep
) -> PlanView:
    """Change a plan's limits or scopes; consumers on it are affected at once."""
    plan = await plan_by_name(PlanRepository(session), name)
    for field_name in body.model_fields_set:
        setattr(plan, field_name, getattr(body, field_name))
    await stage_change(session, notices)
    return PlanView.of(plan)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(409))
async def delete_plan(name: str, session: SessionDep, notices: ChangeNoticesDep) -> Response:
    """Delete a plan that no consumer and no rate limit rule uses."""
    repo = PlanRepository(session)
    plan = await plan_by_name(repo, name)
    in_use = await repo.consumers_on(plan)
    if in_use:
        raise Conflict(
            f"Plan {name!r} is used by {in_use} consumer(s); move them to another plan first.",
            extra={"consumers": in_use},
        )
    rules = await RateLimitRuleRepository(session).names_keyed_on_plan(name)
    if rules:
        raise Conflict(
            f"Plan {name!r} is named by rate limit rule(s) {', '.join(rules)}; "
            "change or delete them first.",
            extra={"rate_limit_rules": list(rules)},
        )
    await repo.delete(plan)
    await stage_change(session, notices)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

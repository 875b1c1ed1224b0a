"""`GET /partner/v1/usage`: the calling consumer's plan, rates and quota consumption."""

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.deps import StateDep
from app.errors import problem_responses
from app.security.quotas import QuotaPeriods, QuotaUsage
from app.security.rbac import PartnerCaller

router = APIRouter()


class QuotaView(BaseModel):
    """One period's quota; `limit` and `remaining` are null when the plan sets none."""

    limit: int | None
    used: int
    remaining: int | None
    resets_at: datetime = Field(description="When the period ends (UTC)")


class RatesView(BaseModel):
    rate_per_second: float | None
    rate_per_minute: int | None
    max_in_flight: int | None


class UsageView(BaseModel):
    """Who the caller is to the gateway and how much of its plan it has used."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consumer": "acme-trading",
                    "consumer_id": 7,
                    "plan": "partner-basic",
                    "scopes": ["candles:read", "quotes:read"],
                    "account_ids": ["ACC-2001"],
                    "rates": {"rate_per_second": 5, "rate_per_minute": 200, "max_in_flight": 10},
                    "day": {
                        "limit": 10000,
                        "used": 42,
                        "remaining": 9958,
                        "resets_at": "2026-11-27T00:00:00Z",
                    },
                    "month": {
                        "limit": 250000,
                        "used": 1234,
                        "remaining": 248766,
                        "resets_at": "2026-12-01T00:00:00Z",
                    },
                }
            ]
        }
    )

    consumer: str
    consumer_id: int | None
    plan: str | None
    scopes: list[str]
    account_ids: list[str]
    rates: RatesView
    day: QuotaView
    month: QuotaView


def _quota(limit: int | None, used: int, resets_at: datetime) -> QuotaView:
    remaining = max(0, limit - used) if limit is not None else None
    return QuotaView(limit=limit, used=used, remaining=remaining, resets_at=resets_at)


@router.get("/usage", response_model=UsageView, responses=problem_responses(401, 403))
async def partner_usage(principal: PartnerCaller, state: StateDep) -> UsageView:
    """The caller's plan, rate limits and day/month quota consumption."""
    snapshot = state.config.current
    plan = snapshot.plans.get(principal.plan) if principal.plan is not None else None
    consumer = (
        snapshot.consumers.get(principal.consumer_id) if principal.consumer_id is not None else None
    )
    assert state.quotas is not None, "the lifespan builds the quota counter"
    if principal.consumer_id is not None:
        usage = await state.quotas.usage(principal.consumer_id)
    else:
        # A client-credentials token without a consumer record: nothing is counted.
        usage = QuotaUsage(0, 0, QuotaPeriods.at(datetime.now(UTC)))
    periods = usage.periods
    used_today, used_this_month = usage.used_today, usage.used_this_month
    return UsageView(
        consumer=consumer.name if consumer is not None else principal.subject,
        consumer_id=principal.consumer_id,
        plan=principal.plan,
        scopes=sorted(principal.scopes),
        account_ids=list(principal.account_ids),
        rates=RatesView(
            rate_per_second=plan.rate_per_second if plan else None,
            rate_per_minute=plan.rate_per_minute if plan else None,
            max_in_flight=plan.max_in_flight if plan else None,
        ),
        day=_quota(plan.quota_per_day if plan else None, used_today, periods.day_resets_at),
        month=_quota(
            plan.quota_per_month if plan else None, used_this_month, periods.month_resets_at
        ),
    )

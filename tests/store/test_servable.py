"""The limits compiled from a snapshot never fail a request, whatever its rows hold.

The snapshot loader refuses rows outside the servable ranges (`app.store.servable`); the
admission compiling limits from the snapshot must not fail either for a value that got past
it (clamped or skipped, with a log line). Properties over any number a row could hold.
"""

import asyncio
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import TooManyRequests
from app.policy.admission import AdmissionControl
from app.security.principal import Principal
from app.settings import Settings
from app.store import servable
from app.store.snapshot import ConfigSnapshot, PlanConfig, RateLimitRuleConfig

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [5e-324, 1e-310, 1e-300, 1 / 86_401, 1e300]
)
ANY_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
MAYBE_INT = st.none() | ANY_INT


def plans() -> st.SearchStrategy[PlanConfig]:
    return st.builds(
        PlanConfig,
        name=st.just("plan"),
        rate_per_second=st.none() | ANY_FLOAT,
        rate_per_minute=MAYBE_INT,
        quota_per_day=MAYBE_INT,
        quota_per_month=MAYBE_INT,
        max_in_flight=st.none() | st.integers(min_value=-5, max_value=2**63 - 1),
        scopes=st.just(frozenset({"quotes:read"})),
    )


def rules() -> st.SearchStrategy[RateLimitRuleConfig]:
    return st.builds(
        RateLimitRuleConfig,
        rule_id=st.just(1),
        name=st.just("rule"),
        key_by=st.sampled_from([*servable.RULE_KEYS, "nobody"]),
        route_prefix=st.just(""),
        plan_name=st.just("plan"),
        limit=ANY_INT,
        period_s=ANY_FLOAT,
        burst=MAYBE_INT,
    )


PATH = "/partner/v1/quotes"
CONSUMER = Principal(
    subject="consumer:acme",
    kind="consumer",
    credential="api_key",
    scopes=frozenset({"quotes:read"}),
    consumer_id=7,
    plan="plan",
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans(), rule=rules())
def test_admission_answers_for_any_stored_plan_and_rule(
    plan: PlanConfig, rule: RateLimitRuleConfig
) -> None:
    snapshot = ConfigSnapshot(version=1, plans={"plan": plan}, rate_limit_rules=(rule,))
    admission = AdmissionControl(Settings(environment="test"), None)

    async def admit() -> None:
        try:
            granted, _ = await admission.admit(
                principal=CONSUMER, address="127.0.0.1", path=PATH, snapshot=snapshot
            )
        except TooManyRequests:
            return
        if granted.release is not None:
            granted.release()

    asyncio.run(admit())
    checks = admission.policies.checks_for(
        snapshot, principal=CONSUMER, address="127.0.0.1", path=PATH
    )
    for _, limit in checks:
        assert 1 <= limit.limit <= servable.MAX_REQUESTS
        assert 0 < limit.period_s <= servable.MAX_WINDOW_S
        assert limit.interval_us >= 1


@settings(database=None)
@given(
    rate=st.floats(
        min_value=servable.MIN_RATE_PER_SECOND, max_value=servable.MAX_REQUESTS, allow_nan=False
    )
)
def test_every_servable_plan_rate_is_enforced_close_to_what_it_says(rate: float) -> None:
    plan = PlanConfig("plan", rate, None, None, None, None, frozenset())
    assert servable.rate_per_second(rate) == rate
    snapshot = ConfigSnapshot(version=1, plans={"plan": plan})
    admission = AdmissionControl(Settings(environment="test"), None)
    limits = admission.policies.plan_limits(snapshot, "plan")
    assert limits is not None
    (limit,) = limits.limits
    enforced = limit.limit / limit.period_s
    # Header counts are whole numbers: one request per whole second(s), or whole requests
    # per second.
    assert math.isclose(enforced, rate, rel_tol=0.5) or abs(enforced - rate) <= 0.5

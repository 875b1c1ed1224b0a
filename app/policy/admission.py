"""Which rate limits and in-flight caps apply to a request, and the admission enforcing them.

Limits come from two places:
- settings: callers without credentials per client address, signed-in users per user;
- the config snapshot: a consumer's plan (`rate_per_second`, `rate_per_minute`,
  `max_in_flight`) and the `rate_limit_rules` table, each rule keyed by consumer, plan
  (each consumer on that plan), user, address or route (one count for all callers), and
  applying to the routes under its path prefix.

Every limit that applies is checked (in Redis, one pipelined round trip); the request is
refused when any is exhausted, and then counts against none of them (see
`app.traffic.ratelimit`). Responses carry
`RateLimit-Policy` (every limit that applied) and `RateLimit` (the most restrictive one),
per the IETF httpapi ratelimit-headers draft.

The policy chain (`app.policy.chain`) admits each request once, right after identifying its
caller; what admission decided (headers, the in-flight slot to give back) is returned as a
typed `Admission` that the chain keeps in the request's context.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from app.errors import ServiceUnavailable, TooManyRequests
from app.observability.access_log import record_rate_limit_refusal
from app.observability.metrics import rate_limit_refusals
from app.policy.context import Admission, RouteLimit
from app.security.principal import Principal
from app.settings import RateLimitSettings, Settings
from app.shared.redis import SharedRedis
from app.store.servable import MAX_REQUESTS, MAX_WINDOW_S, MIN_RATE_PER_SECOND, RULE_KEYS
from app.store.snapshot import ConfigSnapshot, PlanConfig, RateLimitRuleConfig
from app.traffic.gcra import LimitCheck, LimitOutcome, RateLimit, SetMembership, SlotClaim
from app.traffic.ratelimit import RateLimiter, RateLimiterUnavailable
from app.traffic.throttle import ConsumerThrottle

logger = logging.getLogger("gateway.ratelimit")


@dataclass(frozen=True, slots=True)
class _Rule:
    rule_id: int
    key_by: str
    route_prefix: str
    plan_name: str
    limit: RateLimit


@dataclass(frozen=True, slots=True)
class _PlanLimits:
    limits: tuple[RateLimit, ...]
    max_in_flight: int | None


# What compiling a limit from a value outside the servable range could raise.
_UNCOMPILABLE = (ArithmeticError, ValueError, TypeError)


def _per_second(rate: float) -> RateLimit:
    """A plan's sustained rate, kept inside what the limiter counts: at least one request a
    day, at most `MAX_REQUESTS` a second (the snapshot refuses plans outside that range; a
    value that got past it anyway is clamped, never an error)."""
    if rate > MAX_REQUESTS:
        rate = MAX_REQUESTS
    if rate >= 1:
        return RateLimit.of("consumer-second", limit=max(1, round(rate)), period_s=1)
    # Header counts are integers: a fractional rate becomes one request per 1/rate seconds.
    period_s = MAX_WINDOW_S if rate < MIN_RATE_PER_SECOND else min(MAX_WINDOW_S, round(1 / rate))
    return RateLimit.of("consumer-second", limit=1, period_s=max(1, period_s))


def _plan_limits(plan: PlanConfig) -> _PlanLimits:
    limits = []
    rate = plan.rate_per_second
    if rate is not None and math.isfinite(rate) and rate > 0:
        limits.append(_per_second(rate))
    if plan.rate_per_minute is not None and plan.rate_per_minute > 0:
        per_minute = min(plan.rate_per_minute, MAX_REQUESTS)
        limits.append(RateLimit.of("consumer-minute", limit=per_minute, period_s=60))
    max_in_flight = plan.max_in_flight if plan.max_in_flight and plan.max_in_flight > 0 else None
    return _PlanLimits(tuple(limits), max_in_flight)


def _usable(rule: RateLimitRuleConfig) -> bool:
    """Whether a stored rule can be enforced; one that cannot is skipped, never a 500."""
    if (
        1 <= rule.limit <= MAX_REQUESTS
        and math.isfinite(rule.period_s)
        and 0 < rule.period_s <= MAX_WINDOW_S
        and (rule.burst is None or 1 <= rule.burst <= MAX_REQUESTS)
        and rule.key_by in RULE_KEYS
    ):
        return True
    logger.warning("rate limit rule %r is not usable and is skipped: %s", rule.name, rule)
    return False


def _rule(rule: RateLimitRuleConfig) -> _Rule:
    return _Rule(
        rule_id=rule.rule_id,
        key_by=rule.key_by,
        route_prefix=rule.route_prefix,
        plan_name=rule.plan_name,
        limit=RateLimit.of(rule.name, limit=rule.limit, period_s=rule.period_s, burst=rule.burst),
    )


class RateLimitPolicies:
    """Turns settings and the snapshot into the checks of one request; what it compiles from
    the snapshot is kept until the snapshot's version changes."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self.anonymous = RateLimit.of(
            "address",
            limit=settings.anonymous_limit,
            period_s=settings.anonymous_period_s,
            burst=settings.anonymous_burst,
        )
        self.user = (
            RateLimit.of("user", limit=settings.user_limit, period_s=settings.user_period_s)
            if settings.user_limit is not None
            else None
        )
        self._version = -1
        self._plans: dict[str, _PlanLimits] = {}
        self._rules: tuple[_Rule, ...] = ()

    def _compile(self, snapshot: ConfigSnapshot) -> None:
        """Never raises: a plan or rule whose limits cannot be built is skipped and logged,
        and every other request goes on being served."""
        plans = {}
        for plan in snapshot.plans.values():
            try:
                plans[plan.name] = _plan_limits(plan)
            except _UNCOMPILABLE as exc:
                logger.error("plan %r has limits that cannot be enforced, skipped: %s", plan, exc)
        rules = []
        for rule in snapshot.rate_limit_rules:
            try:
                if _usable(rule):
                    rules.append(_rule(rule))
            except _UNCOMPILABLE as exc:
                logger.error("rate limit rule %r cannot be enforced, skipped: %s", rule, exc)
        self._plans = plans
        self._rules = tuple(rules)
        self._version = snapshot.version

    def plan_limits(self, snapshot: ConfigSnapshot, plan: str | None) -> _PlanLimits | None:
        if snapshot.version != self._version:
            self._compile(snapshot)
        return self._plans.get(plan) if plan is not None else None

    def checks_for(
        self,
        snapshot: ConfigSnapshot,
        *,
        principal: Principal | None,
        address: str,
        path: str,
    ) -> list[LimitCheck]:
        if snapshot.version != self._version:
            self._compile(snapshot)
        checks: list[LimitCheck] = []
        kind = principal.kind if principal is not None else "anonymous"
        if principal is not None and kind == "consumer" and principal.consumer_id is not None:
            plan = self._plans.get(principal.plan) if principal.plan is not None else None
            if plan is not None:
                for limit in plan.limits:
                    checks.append((f"c:{principal.consumer_id}:{limit.name}", limit))
        elif principal is not None and kind == "user":
            if self.user is not None:
                checks.append((f"u:{principal.subject}", self.user))
        else:
            checks.append((f"a:{address}", self.anonymous))
        for rule in self._rules:
            if not path.startswith(rule.route_prefix):
                continue
            discriminator = _rule_discriminator(rule, principal, address)
            if discriminator is not None:
                checks.append((f"r:{rule.rule_id}:{discriminator}", rule.limit))
        return checks


def _rule_discriminator(rule: _Rule, principal: Principal | None, address: str) -> str | None:
    """What the rule counts separately, or None when the rule does not apply to the caller."""
    match rule.key_by:
        case "route":
            return ""
        case "address":
            return address
        case "consumer":
            if principal is None or principal.consumer_id is None:
                return None
            return str(principal.consumer_id)
        case "plan":
            if principal is None or principal.consumer_id is None:
                return None
            return str(principal.consumer_id) if principal.plan == rule.plan_name else None
        case "user":
            if principal is None or principal.kind != "user":
                return None
            return principal.subject
    return None


def _route_limit_discriminator(
    key_by: str, principal: Principal | None, address: str
) -> str | None:
    """What a route's own limit counts separately, or None when it does not apply to the
    caller (a consumer limit to a user, say)."""
    match key_by:
        case "route":
            return ""
        case "address":
            return address
        case "consumer":
            if principal is None or principal.consumer_id is None:
                return None
            return str(principal.consumer_id)
        case "user":
            if principal is None or principal.kind != "user":
                return None
            return principal.subject
    return None


def rate_limit_headers(outcomes: Sequence[LimitOutcome]) -> list[tuple[bytes, bytes]]:
    """`RateLimit-Policy` naming every limit checked; `RateLimit` for the most restrictive."""
    tightest = min(outcomes, key=lambda o: (o.remaining, -o.reset_s))
    return [
        (b"ratelimit-policy", ", ".join(o.limit.policy_item for o in outcomes).encode()),
        (b"ratelimit", tightest.header_item.encode()),
    ]


def _refused(policy: str) -> None:
    rate_limit_refusals.labels(policy).inc()
    record_rate_limit_refusal(policy)


def _refusal(outcomes: Sequence[LimitOutcome]) -> TooManyRequests:
    refused = max((o for o in outcomes if not o.admitted), key=lambda o: o.retry_after_s)
    limit = refused.limit
    _refused(limit.name)
    headers = {name.decode(): value.decode() for name, value in rate_limit_headers(outcomes)}
    # The refusing limit is the restrictive one, whatever the others still allow.
    headers["ratelimit"] = refused.header_item
    headers["retry-after"] = str(refused.retry_after_s)
    window = f"{limit.period_s:g}"
    return TooManyRequests(
        f"Rate limit {limit.name!r} is exhausted: {limit.limit} requests per {window} s; "
        f"retry in {refused.retry_after_s} s.",
        headers=headers,
        extra={
            "limit": limit.name,
            "quota": limit.limit,
            "window_s": limit.period_s,
            "retry_after_s": refused.retry_after_s,
        },
    )


def _too_many_in_flight(max_in_flight: int, waited_s: float) -> TooManyRequests:
    _refused("in-flight")
    return TooManyRequests(
        f"Too many requests in flight: this consumer's plan allows {max_in_flight} at once.",
        headers={"Retry-After": str(max(1, math.ceil(waited_s)))},
        extra={"limit": "in-flight", "max_in_flight": max_in_flight},
    )


def _limits_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Rate limits cannot be checked right now; try again shortly.",
        headers={"Retry-After": "1"},
    )


# How often a request waiting for a consumer's shared in-flight slot asks Redis again.
_SHARED_SLOT_POLL_S = 0.02


class AdmissionControl:
    """One process's rate limiter, limit policies and per-consumer in-flight caps."""

    def __init__(self, settings: Settings, redis: SharedRedis | None) -> None:
        limits = settings.rate_limit
        self.enabled = limits.enabled
        self.in_flight_wait_s = limits.in_flight_wait_s
        self.in_flight_lease_ms = int(limits.in_flight_lease_s * 1000)
        self.policies = RateLimitPolicies(limits)
        self.limiter = RateLimiter(
            redis, prefix=settings.redis_prefix, failure=limits.redis_failure
        )
        self.throttle = ConsumerThrottle()

    async def admit(
        self,
        *,
        principal: Principal | None,
        address: str,
        path: str,
        snapshot: ConfigSnapshot,
        membership: SetMembership | None = None,
        route_limits: Sequence[RouteLimit] = (),
    ) -> tuple[Admission, bool | None]:
        """The request's admission, or 429 (a limit or cap is exhausted) or 503 (limits cannot
        be checked); and the answer to `membership`, asked in the same round trip to Redis
        (None when Redis did not answer it)."""
        if not self.enabled:
            answer = await self.is_member(membership) if membership is not None else None
            return Admission(), answer
        checks = self.policies.checks_for(snapshot, principal=principal, address=address, path=path)
        for route_limit in route_limits:
            discriminator = _route_limit_discriminator(route_limit.key_by, principal, address)
            if discriminator is not None:
                checks.append((f"{route_limit.key}:{discriminator}", route_limit.limit))
        consumer_id = principal.consumer_id if principal is not None else None
        max_in_flight = None
        if consumer_id is not None:
            plan = self.policies.plan_limits(snapshot, principal.plan if principal else None)
            max_in_flight = plan.max_in_flight if plan is not None else None
        # With Redis the in-flight slot is claimed in the same round trip as the limits.
        claim = None
        if consumer_id is not None and max_in_flight and self.limiter.shared:
            claim = SlotClaim(
                key=f"c:{consumer_id}", limit=max_in_flight, lease_ms=self.in_flight_lease_ms
            )
        granted: bool | None = None
        member: bool | None = None
        release: Callable[[], None] | None = None
        headers: list[tuple[bytes, bytes]] = []
        if checks or claim is not None or membership is not None:
            try:
                verdict = await self.limiter.admit(checks, claim, membership)
            except RateLimiterUnavailable:
                raise _limits_unavailable() from None
            except asyncio.CancelledError:
                # The slot may have been granted just before the client went away.
                if claim is not None:
                    self.limiter.release(claim)
                raise
            granted, member = verdict.granted, verdict.member
            if granted and claim is not None:
                release = partial(self.limiter.release, claim)
            outcomes = verdict.outcomes
            for outcome in outcomes:
                if not outcome.admitted:
                    if release is not None:
                        release()
                    raise _refusal(outcomes)
            if outcomes:
                headers = rate_limit_headers(outcomes)
        if consumer_id is None or not max_in_flight or granted:
            return Admission(headers, release), member
        if granted is None or claim is None:
            # Redis did not decide (not configured, or down and failing open).
            release = await self._hold_local_slot(consumer_id, max_in_flight)
        else:
            release = await self._wait_for_shared_slot(claim, consumer_id)
        return Admission(headers, release), member

    async def forget_consumer(self, consumer_id: int, *, rules: Iterable[tuple[int, str]]) -> None:
        """Delete a deleted consumer's counts: its plan's limits, its in-flight slots, and its
        counts under the rules (`(rule_id, key_by)` of each) that count every consumer.
        `RedisUnavailable` when Redis does not answer."""
        counting_consumers = [
            rule_id for rule_id, key_by in rules if key_by in {"consumer", "plan"}
        ]
        await self.limiter.forget(
            prefixes=[f"c:{consumer_id}:"],
            keys=[f"r:{rule_id}:{consumer_id}" for rule_id in counting_consumers],
            in_flight=[f"c:{consumer_id}"],
        )

    async def forget_rule(self, rule_id: int) -> None:
        """Delete a deleted rule's counts; `RedisUnavailable` when Redis does not answer."""
        await self.limiter.forget(prefixes=[f"r:{rule_id}:"])

    async def is_member(self, membership: SetMembership) -> bool | None:
        """Ask Redis the membership question alone; None when it cannot answer."""
        try:
            verdict = await self.limiter.admit((), None, membership)
        except RateLimiterUnavailable:
            return None
        return verdict.member

    async def _wait_for_shared_slot(self, claim: SlotClaim, consumer_id: int) -> Callable[[], None]:
        """Ask again until the wait is over: another process may free the slot."""
        deadline = time.monotonic() + self.in_flight_wait_s
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(_SHARED_SLOT_POLL_S, left))
            try:
                verdict = await self.limiter.admit((), claim)
            except RateLimiterUnavailable:
                raise _limits_unavailable() from None
            except asyncio.CancelledError:
                self.limiter.release(claim)
                raise
            if verdict.granted is None:
                return await self._hold_local_slot(consumer_id, claim.limit)
            if verdict.granted:
                return partial(self.limiter.release, claim)
        raise _too_many_in_flight(claim.limit, self.in_flight_wait_s)

    async def _hold_local_slot(self, consumer_id: int, max_in_flight: int) -> Callable[[], None]:
        release = await self.throttle.acquire(
            consumer_id, limit=max_in_flight, wait_s=self.in_flight_wait_s
        )
        if release is None:
            raise _too_many_in_flight(max_in_flight, self.in_flight_wait_s)
        return release

    async def aclose(self) -> None:
        await self.limiter.aclose()


# OpenAPI: the headers of a rate-limited operation's answers (see `app.openapi`).
RATE_LIMIT_HEADERS_DOC: dict[str, dict[str, Any]] = {
    "RateLimit-Policy": {
        "description": "Every rate limit that applied: name, quota `q`, window `w` (seconds)",
        "schema": {"type": "string"},
        "example": '"consumer-minute";q=600;w=60, "quotes-route";q=20;w=1',
    },
    "RateLimit": {
        "description": "The most restrictive limit: remaining `r`, seconds `t` until it is full",
        "schema": {"type": "string"},
        "example": '"consumer-minute";r=42;t=17',
    },
}
RETRY_AFTER_DOC: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
        "example": 12,
    }
}

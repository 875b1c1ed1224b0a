"""The in-memory, versioned view of the config store that the hot path reads.

Requests never query the database: they read `ConfigStore.current`, an immutable snapshot
replaced as a whole when the configuration changes.
"""

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.store.consumers import ApiKeyRepository, ConsumerRepository, PlanRepository
from app.store.database import stored_utc
from app.store.models import ApiKey, Consumer, Plan, RateLimitRule, Service, ServiceInstance
from app.store.rate_limit_rules import RateLimitRuleRepository
from app.store.service_repository import ServiceRepository
from app.traffic.service_policy import ServicePolicy

logger = logging.getLogger("gateway.config")


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    instance_id: int
    url: str
    weight: int = 1
    enabled: bool = True
    # config | registered (self-registration) | dns
    source: str = "config"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    name: str
    timeout_s: float
    balancer: str
    health_path: str
    instances: tuple[InstanceConfig, ...]
    policy: ServicePolicy = field(default_factory=ServicePolicy)


@dataclass(frozen=True, slots=True)
class PlanConfig:
    name: str
    rate_per_second: float | None
    rate_per_minute: int | None
    quota_per_day: int | None
    quota_per_month: int | None
    max_in_flight: int | None
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    consumer_id: int
    name: str
    plan: str | None
    account_ids: tuple[str, ...]
    enabled: bool
    # The OAuth client whose client-credentials tokens act as this consumer.
    oauth_client_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    """What the hot path needs to check a presented key; the key itself is never stored."""

    key_id: int
    prefix: str
    key_hash: str
    consumer_id: int
    expires_at: datetime | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class RateLimitRuleConfig:
    rule_id: int
    name: str
    # consumer | plan | user | address | route
    key_by: str
    route_prefix: str
    plan_name: str
    limit: int
    period_s: float
    burst: int | None


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    version: int
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    plans: dict[str, PlanConfig] = field(default_factory=dict)
    consumers: dict[int, ConsumerConfig] = field(default_factory=dict)
    # consumer_id by the OAuth client linked to it (enabled or not).
    consumers_by_client: dict[str, int] = field(default_factory=dict)
    # By the key's public prefix.
    api_keys: dict[str, ApiKeyConfig] = field(default_factory=dict)
    # Enabled rules only, in rule_id order.
    rate_limit_rules: tuple[RateLimitRuleConfig, ...] = ()


def _service_config(service: Service) -> ServiceConfig:
    return ServiceConfig(
        name=service.name,
        timeout_s=service.timeout_ms / 1000,
        balancer=service.balancer,
        health_path=service.health_path,
        instances=tuple(
            InstanceConfig(i.instance_id, i.url.rstrip("/"), i.weight, i.enabled)
            for i in service.instances
        ),
        policy=_service_policy(service),
    )


def _service_policy(service: Service) -> ServicePolicy:
    try:
        return ServicePolicy.model_validate(service.policy or {})
    except ValidationError as exc:
        # Written before validation existed, or by hand: keep serving on the defaults.
        logger.warning("service %s has an invalid policy, using defaults: %s", service.name, exc)
        return ServicePolicy()


def _rate_limit_rule_config(rule: RateLimitRule) -> RateLimitRuleConfig:
    return RateLimitRuleConfig(
        rule_id=rule.rule_id,
        name=rule.name,
        key_by=rule.key_by,
        route_prefix=rule.route_prefix,
        plan_name=rule.plan_name,
        limit=rule.limit,
        period_s=rule.period_s,
        burst=rule.burst,
    )


def _plan_config(plan: Plan) -> PlanConfig:
    return PlanConfig(
        name=plan.name,
        rate_per_second=plan.rate_per_second,
        rate_per_minute=plan.rate_per_minute,
        quota_per_day=plan.quota_per_day,
        quota_per_month=plan.quota_per_month,
        max_in_flight=plan.max_in_flight,
        scopes=frozenset(plan.scopes or ()),
    )


def _consumer_config(consumer: Consumer) -> ConsumerConfig:
    return ConsumerConfig(
        consumer_id=consumer.consumer_id,
        name=consumer.name,
        plan=consumer.plan.name if consumer.plan is not None else None,
        account_ids=tuple(consumer.account_ids or ()),
        enabled=consumer.enabled,
        oauth_client_id=consumer.oauth_client_id,
    )


def _api_key_config(key: ApiKey) -> ApiKeyConfig:
    return ApiKeyConfig(
        key_id=key.key_id,
        prefix=key.prefix,
        key_hash=key.key_hash,
        consumer_id=key.consumer_id,
        expires_at=stored_utc(key.expires_at),
        revoked=key.revoked_at is not None,
    )


class ConfigStore:
    """Loads snapshots from the database; `current` is what requests read."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._lock = asyncio.Lock()
        self.current = ConfigSnapshot(version=0)

    async def seed_services(self, services: dict[str, list[str]], *, timeout_ms: int) -> None:
        """Register the services named in settings that the store does not know yet."""
        async with self._sessions() as session, session.begin():
            repo = ServiceRepository(session)
            for name, urls in services.items():
                if await repo.by_name(name) is not None:
                    continue
                await repo.add(
                    Service(
                        name=name,
                        timeout_ms=timeout_ms,
                        instances=[ServiceInstance(url=url) for url in urls],
                    )
                )
                logger.info("seeded service %s with %d instance(s)", name, len(urls))

    async def reload(self) -> ConfigSnapshot:
        """Read the whole configuration and publish it as the next snapshot; when nothing
        changed, the current snapshot stays, version and all."""
        async with self._lock:
            async with self._sessions() as session:
                services = await ServiceRepository(session).all()
                plans = await PlanRepository(session).all()
                consumers = await ConsumerRepository(session).all()
                api_keys = await ApiKeyRepository(session).all()
                rules = await RateLimitRuleRepository(session).all()
                snapshot = ConfigSnapshot(
                    version=self.current.version + 1,
                    services={s.name: _service_config(s) for s in services},
                    plans={p.name: _plan_config(p) for p in plans},
                    consumers={c.consumer_id: _consumer_config(c) for c in consumers},
                    consumers_by_client={
                        c.oauth_client_id: c.consumer_id
                        for c in consumers
                        if c.oauth_client_id is not None
                    },
                    api_keys={k.prefix: _api_key_config(k) for k in api_keys},
                    rate_limit_rules=tuple(_rate_limit_rule_config(r) for r in rules if r.enabled),
                )
            if replace(snapshot, version=self.current.version) == self.current:
                return self.current
            self.current = snapshot
            return snapshot

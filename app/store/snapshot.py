"""The in-memory, versioned view of the config store that the hot path reads.

Requests never query the database: they read `ConfigStore.current`, an immutable snapshot
replaced as a whole when the configuration changes.
"""

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.store.models import RateLimitRule, Service, ServiceInstance
from app.store.rate_limit_rules import RateLimitRuleRepository
from app.store.services import ServiceRepository

logger = logging.getLogger("gateway.config")


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    instance_id: int
    url: str
    weight: int = 1
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    name: str
    timeout_s: float
    balancer: str
    health_path: str
    instances: tuple[InstanceConfig, ...]


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
    )


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
        """Read the whole configuration and publish it as the next snapshot."""
        async with self._lock:
            async with self._sessions() as session:
                services = await ServiceRepository(session).all()
                rules = await RateLimitRuleRepository(session).all()
                snapshot = ConfigSnapshot(
                    version=self.current.version + 1,
                    services={s.name: _service_config(s) for s in services},
                    rate_limit_rules=tuple(_rate_limit_rule_config(r) for r in rules if r.enabled),
                )
            self.current = snapshot
            return snapshot

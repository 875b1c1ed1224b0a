"""Where each service answers: the config store, self-registrations and DNS, minus the sick.

Instances come from three sources, merged by URL (the config store wins): the services'
configured instances, instances that registered themselves (`selfreg`), and DNS answers for
services whose policy names a DNS record. `routable()` leaves out instances that health
checks or passive ejection took out of rotation. Self-registrations and DNS are refreshed by
a background task; the hot path only reads memory.
"""

import asyncio
import logging

import aiohttp

from app.discovery.checks import HealthChecker, HealthTable
from app.discovery.dns import DnsDiscovery
from app.discovery.selfreg import SelfRegistry
from app.errors import UpstreamUnavailable
from app.settings import Settings
from app.shared.redis import SharedRedis
from app.shared.tasks import stop_tasks
from app.store.snapshot import ConfigStore, InstanceConfig, ServiceConfig
from app.traffic.balancer import Balancer, create_balancer

logger = logging.getLogger("gateway.discovery")


class ServiceRegistry:
    """Resolves a service name to its configuration and to the instances a call may use."""

    def __init__(
        self,
        config: ConfigStore,
        *,
        self_registry: SelfRegistry | None = None,
        dns: DnsDiscovery | None = None,
        health: HealthTable | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        self._config = config
        self.self_registry = self_registry or SelfRegistry(
            redis=None, prefix="", default_ttl_s=15.0
        )
        self.dns = dns
        self.health = health or HealthTable()
        self._refresh_s = refresh_s
        self._balancers: dict[str, tuple[str, Balancer]] = {}
        # Each service's enabled configured instances, with the configuration they came from.
        self._configured: dict[str, tuple[ServiceConfig, tuple[InstanceConfig, ...]]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._checker: HealthChecker | None = None

    @classmethod
    def from_settings(
        cls, config: ConfigStore, *, redis: SharedRedis | None, settings: Settings
    ) -> "ServiceRegistry":
        resilience = settings.resilience
        return cls(
            config,
            self_registry=SelfRegistry(
                redis=redis,
                prefix=settings.redis_prefix,
                default_ttl_s=resilience.registration_ttl_s,
            ),
            dns=DnsDiscovery(nameservers=resilience.dns_nameservers, port=resilience.dns_port),
            refresh_s=resilience.registry_refresh_s,
        )

    def service_names(self) -> list[str]:
        return sorted(self._config.current.services)

    def service_config(self, name: str) -> ServiceConfig | None:
        return self._config.current.services.get(name)

    def service(self, name: str) -> ServiceConfig:
        service = self._config.current.services.get(name)
        if service is None:
            raise UpstreamUnavailable(f"No service named {name!r} is registered.", service=name)
        return service

    def instances(self, name: str) -> tuple[InstanceConfig, ...]:
        """Every enabled instance of `name`, from all sources."""
        service = self.service(name)
        configured = self._configured.get(name)
        if configured is None or configured[0] is not service:
            # Once per snapshot: the configuration does not change under it.
            enabled = tuple({i.url: i for i in service.instances if i.enabled}.values())
            configured = self._configured[name] = (service, enabled)
        registrations = self.self_registry.live(name)
        found_in_dns = (
            self.dns.instances(name)
            if self.dns is not None and service.policy.dns is not None
            else ()
        )
        if not registrations and not found_in_dns:
            return configured[1]
        found = {i.url: i for i in configured[1]}
        for registration in registrations:
            found.setdefault(
                registration.url,
                InstanceConfig(0, registration.url, registration.weight, source="registered"),
            )
        for instance in found_in_dns:
            found.setdefault(instance.url, instance)
        return tuple(found.values())

    def routable(self, name: str) -> tuple[InstanceConfig, ...]:
        """The instances in rotation; all of them when health took every one out."""
        instances = self.instances(name)
        if self.health.all_in_rotation():
            return instances
        healthy = tuple(i for i in instances if self.health.in_rotation(name, i.url))
        return healthy or instances

    def balancer(self, name: str) -> Balancer:
        """The service's balancer, rebuilt when its configured kind changes."""
        kind = self.service(name).balancer
        current = self._balancers.get(name)
        if current is None or current[0] != kind:
            current = self._balancers[name] = (kind, create_balancer(kind))
        return current[1]

    async def refresh(self) -> None:
        """Re-read self-registrations and due DNS records once."""
        names = self.service_names()
        await self.self_registry.refresh(names)
        if self.dns is None:
            return
        for name in names:
            policy = self._config.current.services[name].policy.dns
            if policy is None:
                self.dns.forget(name)
            elif self.dns.due(name, policy):
                await self.dns.refresh(name, policy)

    async def start(self, *, http: aiohttp.ClientSession | None, health_checks: bool) -> None:
        """Load what the sources know now, then keep it fresh (and checked) in the background."""
        await self.refresh()
        self._refresher = asyncio.create_task(self._keep_fresh(), name="registry-refresh")
        if health_checks and http is not None:
            self._checker = HealthChecker(services=self, http=http, table=self.health)
            self._checker.start()

    async def stop(self) -> None:
        if self._checker is not None:
            await self._checker.stop()
            self._checker = None
        await stop_tasks(self._refresher)
        self._refresher = None

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception:
                # A source having a bad moment must not end discovery for the process.
                logger.exception("registry refresh failed")

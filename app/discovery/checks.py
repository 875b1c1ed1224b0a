"""Instance health: active checks in the background, passive ejection from call outcomes.

Active: every `health_check.interval_ms` each instance gets a GET on its health path; after
`unhealthy_threshold` failed probes in a row it leaves rotation, after `healthy_threshold`
good ones it returns. Passive: an instance whose calls failed `ejection.consecutive_failures`
times in a row is ejected for `ejection.ejection_ms`, or until an active check sees it
recover. The registry routes only to instances in rotation (and to all of them when none is,
since refusing every call is no better than trying).
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import aiohttp

from app.observability.metrics import instance_ejections, instance_healthy
from app.shared.tasks import stop_tasks
from app.store.snapshot import InstanceConfig, ServiceConfig
from app.traffic.service_policy import EjectionPolicy, HealthCheckPolicy

logger = logging.getLogger("gateway.health")
_POLICY_POLL_S = 0.25


@dataclass
class InstanceHealth:
    """What the gateway knows about one instance's health."""

    # The active checks' verdict; instances start healthy, so a fresh one gets traffic.
    healthy: bool = True
    checks_failed: int = 0
    checks_passed: int = 0
    last_check_at: datetime | None = None
    last_error: str | None = None
    calls_failed: int = 0
    ejected_until: float = 0.0
    ejections: int = 0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until


class HealthTable:
    """Every known instance's health in this process, by (service, url)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._instances: dict[tuple[str, str], InstanceHealth] = {}
        # So that `all_in_rotation` reads no instance: how many the checks took out, and
        # when the last passive ejection ends.
        self._unhealthy = 0
        self._ejections_end = 0.0

    def health(self, service: str, url: str) -> InstanceHealth:
        key = (service, url)
        health = self._instances.get(key)
        if health is None:
            health = self._instances[key] = InstanceHealth()
        return health

    def in_rotation(self, service: str, url: str) -> bool:
        health = self._instances.get((service, url))
        return health is None or (health.healthy and not health.ejected(self._clock()))

    def all_in_rotation(self) -> bool:
        """Whether every instance of every service is in rotation (nearly always)."""
        return not self._unhealthy and self._clock() >= self._ejections_end

    def ejected_for_s(self, service: str, url: str) -> float:
        health = self._instances.get((service, url))
        return max(health.ejected_until - self._clock(), 0.0) if health else 0.0

    def record_call(self, service: str, url: str, *, ok: bool, policy: EjectionPolicy) -> None:
        health = self.health(service, url)
        if ok:
            health.calls_failed = 0
            return
        health.calls_failed += 1
        if health.calls_failed >= policy.consecutive_failures and not health.ejected(self._clock()):
            health.ejected_until = self._clock() + policy.ejection_ms / 1000
            self._ejections_end = max(self._ejections_end, health.ejected_until)
            health.ejections += 1
            health.calls_failed = 0
            instance_ejections.labels(service, url, "passive").inc()
            logger.warning(
                "instance_ejected",
                extra={
                    "fields": {
                        "service": service,
                        "instance": url,
                        "cause": "failed calls",
                        "for_s": policy.ejection_ms / 1000,
                    }
                },
            )

    def record_check(
        self, service: str, url: str, *, error: str | None, policy: HealthCheckPolicy
    ) -> None:
        health = self.health(service, url)
        health.last_check_at = datetime.now(UTC)
        health.last_error = error
        if error is None:
            health.checks_failed = 0
            health.checks_passed += 1
            if not health.healthy and health.checks_passed >= policy.healthy_threshold:
                health.healthy = True
                self._unhealthy -= 1
                # It came back (restarted, redeployed): earlier call failures are history.
                health.ejected_until = 0.0
                health.calls_failed = 0
                logger.info(
                    "instance_healthy", extra={"fields": {"service": service, "instance": url}}
                )
        else:
            health.checks_passed = 0
            health.checks_failed += 1
            if health.healthy and health.checks_failed >= policy.unhealthy_threshold:
                health.healthy = False
                self._unhealthy += 1
                instance_ejections.labels(service, url, "check").inc()
                logger.warning(
                    "instance_unhealthy",
                    extra={"fields": {"service": service, "instance": url, "error": error}},
                )
        instance_healthy.labels(service, url).set(1 if health.healthy else 0)

    def forget_except(self, service: str, urls: Iterable[str]) -> None:
        """Drop instances of `service` that are no longer registered anywhere."""
        keep = set(urls)
        for key in [k for k in self._instances if k[0] == service and k[1] not in keep]:
            if not self._instances.pop(key).healthy:
                self._unhealthy -= 1

    def __iter__(self) -> Iterator[tuple[str, str, InstanceHealth]]:
        for (service, url), health in sorted(self._instances.items()):
            yield service, url, health


class CheckedServices(Protocol):
    """The services the checker probes and where their instances are (the registry knows)."""

    def service_names(self) -> list[str]: ...

    def service_config(self, name: str) -> ServiceConfig | None: ...

    def instances(self, name: str) -> tuple[InstanceConfig, ...]: ...


class HealthChecker:
    """One background task per service, probing its instances at the service's interval.

    It reads the services from `services` and writes its verdicts into `table`.
    """

    def __init__(
        self, *, services: CheckedServices, http: aiohttp.ClientSession, table: HealthTable
    ) -> None:
        self._services = services
        self._http = http
        self._table = table
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="health-checks")

    async def stop(self) -> None:
        await stop_tasks(self._supervisor, *self._tasks.values())
        self._tasks.clear()
        self._supervisor = None

    async def _supervise(self) -> None:
        while True:
            names = set(self._services.service_names())
            for name in names - self._tasks.keys():
                self._tasks[name] = asyncio.create_task(self._check_service(name))
            for name in self._tasks.keys() - names:
                self._tasks.pop(name).cancel()
            await asyncio.sleep(1.0)

    async def _check_service(self, name: str) -> None:
        checked_at = -float("inf")
        while True:
            service = self._services.service_config(name)
            if service is None:
                return
            policy = service.policy.health_check
            interval = policy.interval_ms / 1000
            if policy.enabled and time.monotonic() - checked_at >= interval:
                checked_at = time.monotonic()
                try:
                    await self.check_service(name)
                except Exception:
                    # One bad round (e.g. the service was just removed) must not end checking.
                    logger.exception("health check of %s failed", name)
            # Short naps, so a changed interval applies soon rather than after the old one.
            await asyncio.sleep(min(interval, _POLICY_POLL_S))

    async def check_service(self, name: str) -> None:
        """Probe every instance of `name` once and record the results."""
        service = self._services.service_config(name)
        if service is None:
            # Removed since the last round; `_check_service` ends on its next turn.
            return
        policy = service.policy.health_check
        path = policy.path or service.health_path
        instances = self._services.instances(name)
        errors = await asyncio.gather(
            *(self._probe(instance.url + path, policy.timeout_ms / 1000) for instance in instances)
        )
        for instance, error in zip(instances, errors, strict=True):
            self._table.record_check(name, instance.url, error=error, policy=policy)
        self._table.forget_except(name, (i.url for i in instances))

    async def _probe(self, url: str, timeout_s: float) -> str | None:
        try:
            async with self._http.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
            ) as response:
                await response.read()
                if response.status >= 400:
                    return f"answered {response.status}"
                return None
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return type(exc).__name__

"""The in-memory, versioned view of the config store that the hot path reads.

Requests never query the database: they read `ConfigStore.current`, an immutable snapshot
replaced as a whole when the configuration changes.

A row the hot path could not serve (a value outside `app.store.servable`'s ranges, or one
that cannot even be read) is left out of the snapshot and listed in its `refused` rows, with
its table, id and why; the rest of the configuration loads. After each load the snapshot is
written to local disk (`app.store.snapshot_file`); a process whose database is unavailable
at start-up serves from that file, reports itself stale, and catches up on the next reload
that reaches the database.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import raiseload

from app.observability.metrics import config_refused_rows, config_reloads, config_version
from app.store import servable
from app.store.database import is_unavailable, read_one_view, stored_utc
from app.store.models import (
    ApiKey,
    Consumer,
    Plan,
    RateLimitRule,
    Route,
    Service,
    ServiceInstance,
)
from app.store.route_declarations import RouteDeclaration
from app.store.routes import RevisionRepository, declaration_of
from app.store.service_repository import ServiceRepository
from app.store.snapshot_file import SnapshotFile
from app.store.table_reader import UNREADABLE, TableReader
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
class RouteConfig:
    """A pass-through route the hot path serves (enabled, and its declaration valid)."""

    route_id: int
    declaration: RouteDeclaration


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A stored row the snapshot leaves out, and why."""

    table: str
    row_id: int
    reason: str


# Where a snapshot's content came from: the database, or the file the last load wrote.
ConfigSource = Literal["database", "disk"]


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
    # Enabled pass-through routes, in route_id order.
    routes: tuple[RouteConfig, ...] = ()
    # The store's revision this content was read at (`config_revision`): the same number in
    # every process that serves the same configuration.
    revision: int = 0
    refused: tuple[RefusedRow, ...] = ()
    # When the content was read from the database.
    loaded_at: datetime | None = None
    source: ConfigSource = "database"


class ConfigUnavailable(RuntimeError):
    """Start-up found neither the database nor a snapshot file to serve from."""


def _service_config(service: Service, instances: Sequence[InstanceConfig]) -> ServiceConfig:
    return ServiceConfig(
        name=servable.text(service.name, field="name"),
        timeout_s=servable.whole(
            service.timeout_ms, field="timeout_ms", low=1, high=servable.MAX_TIMEOUT_MS
        )
        / 1000,
        balancer=servable.text(service.balancer, field="balancer"),
        health_path=servable.text(service.health_path, field="health_path"),
        instances=tuple(instances),
        policy=_service_policy(service),
    )


def _instance_config(instance: ServiceInstance) -> InstanceConfig:
    return InstanceConfig(
        instance_id=instance.instance_id,
        url=servable.text(instance.url, field="url").rstrip("/"),
        weight=servable.whole(instance.weight, field="weight", low=1),
        enabled=servable.flag(instance.enabled, field="enabled"),
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
        name=servable.text(rule.name, field="name"),
        key_by=servable.one_of(rule.key_by, field="key_by", allowed=servable.RULE_KEYS),
        route_prefix=servable.text(rule.route_prefix, field="route_prefix"),
        plan_name=servable.text(rule.plan_name, field="plan_name"),
        limit=servable.whole(rule.limit, field="limit", low=1, high=servable.MAX_REQUESTS),
        period_s=servable.real(
            rule.period_s, field="period_s", above=0, high=servable.MAX_WINDOW_S
        ),
        burst=servable.optional_whole(rule.burst, field="burst", low=1, high=servable.MAX_REQUESTS),
    )


def _plan_config(plan: Plan) -> PlanConfig:
    return PlanConfig(
        name=servable.text(plan.name, field="name"),
        rate_per_second=servable.rate_per_second(plan.rate_per_second),
        rate_per_minute=servable.optional_whole(
            plan.rate_per_minute, field="rate_per_minute", low=1, high=servable.MAX_REQUESTS
        ),
        quota_per_day=servable.optional_whole(plan.quota_per_day, field="quota_per_day", low=1),
        quota_per_month=servable.optional_whole(
            plan.quota_per_month, field="quota_per_month", low=1
        ),
        max_in_flight=servable.optional_whole(
            plan.max_in_flight, field="max_in_flight", low=1, high=servable.MAX_IN_FLIGHT
        ),
        scopes=frozenset(servable.texts(plan.scopes or [], field="scopes")),
    )


def _consumer_config(consumer: Consumer, plan_names: Mapping[int, str]) -> ConsumerConfig:
    return ConsumerConfig(
        consumer_id=consumer.consumer_id,
        name=servable.text(consumer.name, field="name"),
        # A plan that could not be read has no name to give: the consumer holds no plan's
        # scopes until it is fixed.
        plan=plan_names.get(consumer.plan_id) if consumer.plan_id is not None else None,
        account_ids=servable.texts(consumer.account_ids or [], field="account_ids"),
        enabled=servable.flag(consumer.enabled, field="enabled"),
        oauth_client_id=servable.optional_text(consumer.oauth_client_id, field="oauth_client_id"),
    )


def _api_key_config(key: ApiKey) -> ApiKeyConfig:
    return ApiKeyConfig(
        key_id=key.key_id,
        prefix=servable.text(key.prefix, field="prefix"),
        key_hash=servable.text(key.key_hash, field="key_hash"),
        consumer_id=servable.whole(key.consumer_id, field="consumer_id", low=0),
        expires_at=stored_utc(servable.optional_moment(key.expires_at, field="expires_at")),
        revoked=servable.optional_moment(key.revoked_at, field="revoked_at") is not None,
    )


def _route_config(route: Route) -> RouteConfig:
    try:
        declaration = declaration_of(route)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "declaration"
        raise servable.Unservable(
            f"declaration does not validate ({exc.error_count()} error(s)): {where}: {first['msg']}"
        ) from None
    return RouteConfig(route_id=route.route_id, declaration=declaration)


Row = TypeVar("Row")
Config = TypeVar("Config")


class _Refusals:
    """Collects the rows a load leaves out."""

    def __init__(self) -> None:
        self.rows: list[RefusedRow] = []

    def configs(
        self,
        table: str,
        rows: Iterable[Row],
        *,
        row_id: Callable[[Row], int],
        convert: Callable[[Row], Config],
    ) -> list[Config]:
        """Each row's config; a row that cannot be served is refused, the rest are kept."""
        configs = []
        for row in rows:
            try:
                configs.append(convert(row))
            except UNREADABLE as exc:
                self.rows.append(RefusedRow(table, row_id(row), str(exc)))
        return configs

    def unreadable(self, table: str, rows: Iterable[tuple[int, str]]) -> None:
        self.rows.extend(RefusedRow(table, row_id, why) for row_id, why in rows)


async def _load(session: AsyncSession, *, version: int) -> ConfigSnapshot:
    """Read every table and build the snapshot, leaving out the rows it cannot serve."""
    # A change committing while the tables are read must not be half in the snapshot (a
    # key without its consumer, the new revision without its rows).
    await read_one_view(session)
    reader = TableReader(session)
    refusals = _Refusals()
    # Relationships are not loaded with their rows: each row is read, and refused, alone.
    service_rows = await reader.rows(Service, raiseload(Service.instances))
    instance_rows = await reader.rows(ServiceInstance)
    plan_rows = await reader.rows(Plan)
    consumer_rows = await reader.rows(Consumer, raiseload(Consumer.plan))
    key_rows = await reader.rows(ApiKey)
    rule_rows = await reader.rows(RateLimitRule)
    route_rows = await reader.rows(Route)
    revision = await RevisionRepository(session).current()
    for table, rows in (
        ("services", service_rows),
        ("service_instances", instance_rows),
        ("plans", plan_rows),
        ("consumers", consumer_rows),
        ("api_keys", key_rows),
        ("rate_limit_rules", rule_rows),
        ("routes", route_rows),
    ):
        refusals.unreadable(table, rows.unreadable)

    instances: dict[int, list[InstanceConfig]] = {}
    for row in instance_rows.rows:
        converted = refusals.configs(
            "service_instances", [row], row_id=lambda i: i.instance_id, convert=_instance_config
        )
        instances.setdefault(row.service_id, []).extend(converted)
    services = refusals.configs(
        "services",
        service_rows.rows,
        row_id=lambda s: s.service_id,
        convert=lambda s: _service_config(s, instances.get(s.service_id, [])),
    )
    plans = refusals.configs(
        "plans", plan_rows.rows, row_id=lambda p: p.plan_id, convert=_plan_config
    )
    # By every readable plan row, refused or not: its consumers keep naming it.
    plan_names = {p.plan_id: p.name for p in plan_rows.rows if isinstance(p.name, str)}
    consumers = refusals.configs(
        "consumers",
        consumer_rows.rows,
        row_id=lambda c: c.consumer_id,
        convert=lambda c: _consumer_config(c, plan_names),
    )
    api_keys = refusals.configs(
        "api_keys", key_rows.rows, row_id=lambda k: k.key_id, convert=_api_key_config
    )
    # A switched-off rule is not served, so it cannot be refused either.
    rules = refusals.configs(
        "rate_limit_rules",
        [r for r in rule_rows.rows if r.enabled],
        row_id=lambda r: r.rule_id,
        convert=_rate_limit_rule_config,
    )
    routes = refusals.configs(
        "routes",
        [r for r in route_rows.rows if r.enabled is True],
        row_id=lambda r: r.route_id,
        convert=_route_config,
    )
    return ConfigSnapshot(
        version=version,
        services={s.name: s for s in services},
        plans={p.name: p for p in plans},
        consumers={c.consumer_id: c for c in consumers},
        consumers_by_client={
            c.oauth_client_id: c.consumer_id for c in consumers if c.oauth_client_id is not None
        },
        api_keys={k.prefix: k for k in api_keys},
        rate_limit_rules=tuple(rules),
        routes=tuple(routes),
        revision=revision,
        refused=tuple(sorted(refusals.rows, key=lambda r: (r.table, r.row_id))),
        loaded_at=datetime.now(UTC),
    )


def _publish_figures(snapshot: ConfigSnapshot) -> None:
    """The served snapshot's version and refused rows, as metrics."""
    config_version.set(snapshot.version)
    config_refused_rows.set(len(snapshot.refused))


def _content(snapshot: ConfigSnapshot) -> ConfigSnapshot:
    """What a snapshot says, without when it was read or its place in the sequence."""
    return replace(snapshot, version=0, loaded_at=None)


@dataclass(frozen=True, slots=True)
class _StoredSnapshot:
    """The snapshot file's JSON document."""

    format: Literal[1]
    snapshot: ConfigSnapshot


_STORED = TypeAdapter(_StoredSnapshot)

_FIRST_RETRY_S = 0.1
_LAST_RETRY_S = 1.0


class ConfigStore:
    """Loads snapshots from the database; `current` is what requests read."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        snapshot_file: SnapshotFile | None = None,
    ) -> None:
        self._sessions = sessions
        self._file = snapshot_file
        self._lock = asyncio.Lock()
        self.current = ConfigSnapshot(version=0)
        # Services named in settings, registered by the first load that reaches the database.
        self._seed: tuple[dict[str, list[str]], int] | None = None

    @property
    def stale(self) -> bool:
        """Serving the file the last load wrote, because the database has not answered since
        start-up."""
        return self.current.source == "disk"

    async def start(
        self, *, services: dict[str, list[str]], timeout_ms: int, within_s: float
    ) -> ConfigSnapshot:
        """The first snapshot: from the database, tried again until `within_s` has passed;
        failing that, from the snapshot file; failing that, `ConfigUnavailable`."""
        self._seed = (dict(services), timeout_ms)
        failure = await self._first_load(within_s)
        if failure is None:
            return self.current
        snapshot = await self._read_file()
        if snapshot is None:
            where = self._file.path if self._file is not None else None
            message = (
                f"The config database ({self._database()}) was unavailable for "
                f"{within_s:g} s ({type(failure).__name__}: {failure}) and there is no usable "
                f"config snapshot file ({where or 'none configured'}); giving up."
            )
            logger.critical("%s", message)
            raise ConfigUnavailable(message)
        self.current = snapshot
        _publish_figures(snapshot)
        logger.warning(
            "config database (%s) unavailable (%s: %s): serving the snapshot from %s, "
            "version %d, loaded %s, until it answers",
            self._database(),
            type(failure).__name__,
            failure,
            self._file.path if self._file is not None else "-",
            snapshot.version,
            snapshot.loaded_at.isoformat() if snapshot.loaded_at else "-",
        )
        return snapshot

    async def _first_load(self, within_s: float) -> BaseException | None:
        """None once a load has reached the database; else why the last try failed."""
        failure: BaseException = TimeoutError(f"no answer within {within_s:g} s")
        delay = _FIRST_RETRY_S
        give_up_at = time.monotonic() + within_s
        try:
            async with asyncio.timeout(within_s):
                while True:
                    try:
                        await self.reload()
                        return None
                    except Exception as exc:
                        if not is_unavailable(exc):
                            raise
                        failure = exc
                        logger.warning("config database unavailable at start-up: %s", exc)
                    await asyncio.sleep(min(delay, max(0.0, give_up_at - time.monotonic())))
                    delay = min(delay * 2, _LAST_RETRY_S)
        except TimeoutError:
            return failure

    def _database(self) -> str:
        engine = self._sessions.kw.get("bind")
        url = getattr(engine, "url", None)
        return url.render_as_string(hide_password=True) if url is not None else "unknown"

    async def stored_revision(self) -> int:
        """The store's revision now (one small query): whether this snapshot is behind."""
        async with self._sessions() as session:
            return await RevisionRepository(session).current()

    async def seed_services(self, services: dict[str, list[str]], *, timeout_ms: int) -> None:
        """Register the services named in settings that the store does not know yet.

        Processes starting together on a fresh database (`--workers N`, a new deployment's
        pods) race to seed: the one whose insert collides finds them seeded by another."""
        try:
            await self._seed_missing(services, timeout_ms=timeout_ms)
        except IntegrityError:
            logger.info("services seeded meanwhile by another gateway process")

    async def _seed_missing(self, services: dict[str, list[str]], *, timeout_ms: int) -> None:
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
            if self._seed is not None:
                services, timeout_ms = self._seed
                await self.seed_services(services, timeout_ms=timeout_ms)
                self._seed = None
            try:
                async with self._sessions() as session:
                    snapshot = await _load(session, version=self.current.version + 1)
            except Exception:
                config_reloads.labels("failed").inc()
                raise
            config_reloads.labels("loaded").inc()
            if _content(snapshot) == _content(self.current):
                return self.current
            self._log_refusals(snapshot)
            self.current = snapshot
            _publish_figures(snapshot)
            logger.info(
                "config_reloaded",
                extra={
                    "fields": {"version": snapshot.version, "refused_rows": len(snapshot.refused)}
                },
            )
            await self._write_file(snapshot)
            return snapshot

    def _log_refusals(self, snapshot: ConfigSnapshot) -> None:
        """Each refused row once, when it is first refused, not on every reload."""
        known = set(self.current.refused)
        for row in snapshot.refused:
            if row not in known:
                logger.error(
                    "config_row_refused",
                    extra={
                        "fields": {"table": row.table, "row_id": row.row_id, "reason": row.reason}
                    },
                )

    async def _write_file(self, snapshot: ConfigSnapshot) -> None:
        if self._file is None:
            return
        data = _STORED.dump_json(_StoredSnapshot(format=1, snapshot=snapshot))
        try:
            await asyncio.to_thread(self._file.write, data)
        except OSError as exc:
            # Serving goes on; only a start-up without the database would miss the file.
            logger.warning("could not write the config snapshot to %s: %s", self._file.path, exc)

    async def _read_file(self) -> ConfigSnapshot | None:
        if self._file is None:
            return None
        try:
            data = await asyncio.to_thread(self._file.read)
        except OSError as exc:
            logger.error("could not read the config snapshot %s: %s", self._file.path, exc)
            return None
        if data is None:
            return None
        try:
            stored = _STORED.validate_json(data)
        except ValidationError as exc:
            logger.error("the config snapshot %s is not usable: %s", self._file.path, exc)
            return None
        return replace(stored.snapshot, source="disk")

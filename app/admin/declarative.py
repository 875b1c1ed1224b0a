"""Config as code: the whole config store as one declarative document, and how a document
is exported, compared with the store, and applied to it.

The document's entries are the admin API's own request models (`ServiceCreate`,
`PlanCreate`, `ConsumerCreate`, `RateLimitRuleCreate`, `RouteDeclaration`), so a file
accepts exactly what the admin API accepts; what the admin API checks against the store (a
consumer's or rule's plan exists, a route's service exists, an OAuth client is linked once)
is checked here across the document.
Entries are matched by name (instances by URL); ids, timestamps and API keys are never in a
document (keys are issued by `gateway keys issue`, a consumer kept by name keeps its keys).

The document is the whole configuration: applying it creates, changes and deletes rows until
the store holds what it says, in one transaction of the caller's (`apply` stages the
changes, the caller commits or rolls back), so it applies all or changes nothing.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.consumers import ConsumerCreate
from app.admin.plans import PlanCreate
from app.admin.rate_limits import RateLimitRuleCreate
from app.admin.services import InstanceCreate, ServiceCreate
from app.store.consumers import ApiKeyRepository, ConsumerRepository, PlanRepository
from app.store.models import Consumer, Plan, RateLimitRule, Service, ServiceInstance
from app.store.rate_limit_rules import RateLimitRuleRepository
from app.store.route_declarations import RouteDeclaration
from app.store.routes import RevisionRepository, RouteRepository, declaration_of
from app.store.service_repository import ServiceRepository
from app.traffic.service_policy import ServicePolicy

DOCUMENT_VERSION: Literal[1] = 1


class ServiceEntry(ServiceCreate):
    """A service, its instances and its traffic policy."""

    model_config = ConfigDict(title="Service")

    policy: ServicePolicy = Field(
        default_factory=ServicePolicy,
        description="Traffic policy; only the fields set differ from the defaults",
    )

    @field_serializer("policy")
    def _only_what_is_set(self, policy: ServicePolicy) -> dict[str, Any]:
        # As the admin API stores it: improved defaults still reach the unset fields.
        return policy.model_dump(mode="json", exclude_unset=True)


class PlanEntry(PlanCreate):
    model_config = ConfigDict(title="Plan")


class ConsumerEntry(ConsumerCreate):
    """A consumer; its API keys are not part of the document."""

    model_config = ConfigDict(title="Consumer")


class RateLimitRuleEntry(RateLimitRuleCreate):
    model_config = ConfigDict(title="RateLimitRule")

    @model_validator(mode="after")
    def _plan_only_with_key_by_plan(self) -> "RateLimitRuleEntry":
        # The admin API's rule (`app.admin.rate_limits._enforceable`).
        if self.key_by == "plan" and self.plan_name is None:
            raise ValueError("plan_name is required when key_by is plan")
        if self.key_by != "plan" and self.plan_name is not None:
            raise ValueError("only a rule with key_by plan names a plan; leave plan_name out")
        return self


class RouteEntry(RouteDeclaration):
    """A pass-through route, as the admin API takes it."""

    model_config = ConfigDict(title="Route")


class GatewayConfig(BaseModel):
    """The gateway's configuration: services, plans, consumers, rate limit rules and
    pass-through routes."""

    model_config = ConfigDict(
        extra="forbid",
        title="Gateway configuration",
        # Pydantic writes JSON Schema 2020-12; saying so lets editors pick the right dialect.
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1] = Field(DOCUMENT_VERSION, description="The document format")
    services: list[ServiceEntry] = Field(default_factory=list)
    plans: list[PlanEntry] = Field(default_factory=list)
    consumers: list[ConsumerEntry] = Field(default_factory=list)
    rate_limit_rules: list[RateLimitRuleEntry] = Field(default_factory=list)
    routes: list[RouteEntry] = Field(default_factory=list)

    @field_serializer("routes")
    def _declared(self, routes: list[RouteEntry]) -> list[dict[str, Any]]:
        # What differs from the defaults, as the routes table keeps it.
        return [route.model_dump(mode="json", exclude_defaults=True) for route in routes]


Location = tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class Fault:
    """What is wrong with a document, and where: `("consumers", 2, "plan")`."""

    loc: Location
    message: str

    @property
    def path(self) -> str:
        """The place as a reader writes it: `consumers[2].plan`."""
        return _path(self.loc)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.loc else self.message


class InvalidDocument(ValueError):
    def __init__(self, faults: Sequence[Fault]) -> None:
        super().__init__("; ".join(str(f) for f in faults))
        self.faults = tuple(faults)


def _path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_document(data: object) -> GatewayConfig:
    """The document in `data` (parsed YAML or JSON), or `InvalidDocument` naming every fault:
    each value as the admin API checks it, then the references between entries."""
    if data is None:
        data = {}
    try:
        document = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        faults = []
        for error in exc.errors(include_url=False):
            # A model validator's error sits on its entry; drop pydantic's "Value error, ".
            message = str(error["msg"]).removeprefix("Value error, ")
            loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
            faults.append(Fault(loc, message))
        raise InvalidDocument(faults) from None
    faults = cross_references(document)
    if faults:
        raise InvalidDocument(faults)
    return document


def _duplicates(section: Location, names: Sequence[str], what: str = "name") -> list[Fault]:
    seen = Counter(names)
    return [
        Fault((*section, index, what), f"{name!r} appears more than once in {_path(section)}")
        for index, name in enumerate(names)
        if seen[name] > 1 and names.index(name) != index
    ]


def cross_references(document: GatewayConfig) -> list[Fault]:
    """What the admin API would refuse against the store: duplicate names, a plan that is
    not there, an OAuth client linked twice, an instance URL twice in one service."""
    faults = _duplicates(("services",), [s.name for s in document.services])
    for index, service in enumerate(document.services):
        faults += _duplicates(
            ("services", index, "instances"), [i.url for i in service.instances], "url"
        )
    faults += _duplicates(("plans",), [p.name for p in document.plans])
    faults += _duplicates(("consumers",), [c.name for c in document.consumers])
    faults += _duplicates(("rate_limit_rules",), [r.name for r in document.rate_limit_rules])
    faults += _duplicates(("routes",), [r.name for r in document.routes])
    services = {s.name for s in document.services}
    for index, route in enumerate(document.routes):
        if route.upstream.service not in services:
            faults.append(
                Fault(
                    ("routes", index, "upstream", "service"),
                    f"no service named {route.upstream.service!r} in services",
                )
            )
    plans = {p.name for p in document.plans}
    for index, consumer in enumerate(document.consumers):
        if consumer.plan is not None and consumer.plan not in plans:
            faults.append(
                Fault(("consumers", index, "plan"), f"no plan named {consumer.plan!r} in plans")
            )
    clients = [c.oauth_client_id for c in document.consumers]
    for index, client in enumerate(clients):
        if client is not None and clients.index(client) != index:
            faults.append(
                Fault(
                    ("consumers", index, "oauth_client_id"),
                    f"OAuth client {client!r} is already linked to consumer "
                    f"{document.consumers[clients.index(client)].name!r}",
                )
            )
    for index, rule in enumerate(document.rate_limit_rules):
        if rule.plan_name is not None and rule.plan_name not in plans:
            faults.append(
                Fault(
                    ("rate_limit_rules", index, "plan_name"),
                    f"no plan named {rule.plan_name!r} in plans",
                )
            )
    return faults


def document_data(document: GatewayConfig) -> dict[str, Any]:
    """The document as plain data, in its canonical order (what `export` writes)."""
    return document.model_dump(mode="json")


# Export.


class UnexportableRow(ValueError):
    """A stored row the admin API would not accept (written around it): a document holding
    it could not be applied."""


def _entry(model: type[BaseModel], where: str, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        faults = "; ".join(
            f"{_path(e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise UnexportableRow(f"{where}: {faults}") from None


async def export_document(session: AsyncSession) -> GatewayConfig:
    """The store's configuration as a document: entries by name, instances by URL."""
    services = []
    for service in sorted(await ServiceRepository(session).all(), key=lambda s: s.name):
        services.append(
            _entry(
                ServiceEntry,
                f"service {service.name!r}",
                {
                    "name": service.name,
                    "timeout_ms": service.timeout_ms,
                    "balancer": service.balancer,
                    "health_path": service.health_path,
                    "instances": [
                        {"url": i.url, "weight": i.weight, "enabled": i.enabled}
                        for i in sorted(service.instances, key=lambda i: i.url)
                    ],
                    "policy": service.policy or {},
                },
            )
        )
    plans = [
        _entry(PlanEntry, f"plan {plan.name!r}", _plan_fields(plan))
        for plan in sorted(await PlanRepository(session).all(), key=lambda p: p.name)
    ]
    consumers = [
        _entry(ConsumerEntry, f"consumer {consumer.name!r}", _consumer_fields(consumer))
        for consumer in sorted(await ConsumerRepository(session).all(), key=lambda c: c.name)
    ]
    rules = [
        _entry(RateLimitRuleEntry, f"rate limit rule {rule.name!r}", _rule_fields(rule))
        for rule in sorted(await RateLimitRuleRepository(session).all(), key=lambda r: r.name)
    ]
    routes = []
    for route in sorted(await RouteRepository(session).all(), key=lambda r: r.name):
        try:
            declaration = declaration_of(route)
        except ValidationError as exc:
            raise UnexportableRow(f"route {route.name!r}: {exc}") from None
        routes.append(RouteEntry.model_validate(declaration.model_dump()))
    return GatewayConfig(
        services=services, plans=plans, consumers=consumers, rate_limit_rules=rules, routes=routes
    )


def _plan_fields(plan: Plan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "rate_per_second": plan.rate_per_second,
        "rate_per_minute": plan.rate_per_minute,
        "quota_per_day": plan.quota_per_day,
        "quota_per_month": plan.quota_per_month,
        "max_in_flight": plan.max_in_flight,
        "scopes": list(plan.scopes or []),
    }


def _consumer_fields(consumer: Consumer) -> dict[str, Any]:
    return {
        "name": consumer.name,
        "plan": consumer.plan.name if consumer.plan is not None else None,
        "account_ids": list(consumer.account_ids or []),
        "oauth_client_id": consumer.oauth_client_id,
        "enabled": consumer.enabled,
    }


def _rule_fields(rule: RateLimitRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "key_by": rule.key_by,
        "route_prefix": rule.route_prefix,
        # The table keeps "" for "no plan".
        "plan_name": rule.plan_name or None,
        "limit": rule.limit,
        "period_s": rule.period_s,
        "burst": rule.burst,
        "enabled": rule.enabled,
    }


# Diff.

Action = Literal["create", "update", "delete"]
_MARKS: dict[Action, str] = {"create": "+", "update": "~", "delete": "-"}


@dataclass(frozen=True, slots=True)
class Change:
    """One row to create, update or delete; `fields`: (name, before, after) of an update."""

    action: Action
    kind: Literal["service", "instance", "plan", "consumer", "rate limit rule", "route"]
    name: str
    fields: tuple[tuple[str, Any, Any], ...] = field(default=())

    def __str__(self) -> str:
        line = f"{_MARKS[self.action]} {self.kind} {self.name}"
        if self.fields:
            line += ": " + ", ".join(
                f"{name} {_shown(before)} -> {_shown(after)}" for name, before, after in self.fields
            )
        return line


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


Entry = ServiceEntry | PlanEntry | ConsumerEntry | RateLimitRuleEntry | RouteEntry


def _by_name(entries: Iterable[Entry]) -> dict[str, Entry]:
    return {entry.name: entry for entry in entries}


def _field_changes(
    before: BaseModel, after: BaseModel, *, skip: frozenset[str] = frozenset()
) -> tuple[tuple[str, Any, Any], ...]:
    """The fields that differ; a nested value shown by what differs from its defaults."""
    full_before, full_after = before.model_dump(mode="json"), after.model_dump(mode="json")
    shown_before = before.model_dump(mode="json", exclude_defaults=True)
    shown_after = after.model_dump(mode="json", exclude_defaults=True)
    return tuple(
        (
            name,
            shown_before.get(name, full_before[name]),
            shown_after.get(name, full_after[name]),
        )
        for name in full_after
        if name not in skip and full_before[name] != full_after[name]
    )


def _section(
    kind: Any,
    current: Mapping[str, BaseModel],
    desired: Mapping[str, BaseModel],
    *,
    skip: frozenset[str] = frozenset(),
) -> tuple[list[Change], list[Change], list[Change]]:
    """Creates, updates and deletes of one section, each in name order."""
    creates = [Change("create", kind, name) for name in sorted(desired.keys() - current.keys())]
    updates = []
    for name in sorted(desired.keys() & current.keys()):
        changed = _field_changes(current[name], desired[name], skip=skip)
        if changed:
            updates.append(Change("update", kind, name, changed))
    deletes = [Change("delete", kind, name) for name in sorted(current.keys() - desired.keys())]
    return creates, updates, deletes


def diff(current: GatewayConfig, desired: GatewayConfig) -> list[Change]:
    """What turns `current` into `desired`, in an order the store accepts: rows that others
    name are created before and deleted after the rows naming them."""
    services = _section(
        "service",
        _by_name(current.services),
        _by_name(desired.services),
        skip=frozenset({"instances"}),
    )
    instances = _section(
        "instance", _instances(current.services), _instances(desired.services), skip=frozenset()
    )
    plans = _section("plan", _by_name(current.plans), _by_name(desired.plans))
    consumers = _section("consumer", _by_name(current.consumers), _by_name(desired.consumers))
    rules = _section(
        "rate limit rule", _by_name(current.rate_limit_rules), _by_name(desired.rate_limit_rules)
    )
    routes = _section("route", _by_name(current.routes), _by_name(desired.routes))
    # A deleted service takes its instances with it.
    gone = {c.name for c in services[2]}
    instance_deletes = [c for c in instances[2] if c.name.split(" ", 1)[0] not in gone]
    # Instances of a new service come with it.
    new = {c.name for c in services[0]}
    instance_creates = [c for c in instances[0] if c.name.split(" ", 1)[0] not in new]
    return [
        *routes[2],
        *rules[2],
        *consumers[2],
        *plans[0],
        *plans[1],
        *services[0],
        *services[1],
        *instance_deletes,
        *instance_creates,
        *instances[1],
        *consumers[0],
        *consumers[1],
        *rules[0],
        *rules[1],
        *routes[0],
        *routes[1],
        *services[2],
        *plans[2],
    ]


def _instances(services: Iterable[ServiceEntry]) -> dict[str, InstanceCreate]:
    return {
        f"{service.name} {instance.url}": instance
        for service in services
        for instance in service.instances
    }


# Apply.


@dataclass(frozen=True, slots=True)
class Applied:
    changes: list[Change]
    # Key prefixes of the consumers deleted: to be announced revoked after the commit.
    revoked_prefixes: list[str]


async def apply(session: AsyncSession, desired: GatewayConfig) -> Applied:
    """Stage the changes that make the store hold `desired`, in the caller's transaction.

    Nothing is committed here: the caller commits, or rolls back on any exception (also a
    dry run, or when nothing changes), so a failure part way leaves the store as it was.
    """
    # The store's revision first: it rises in this transaction (every process can tell by
    # the number that it is behind), and on PostgreSQL its row lock makes a change committed
    # meanwhile wait, or this wait for it, so the diff is taken from what it is applied to.
    await RevisionRepository(session).advance()
    current = await export_document(session)
    changes = diff(current, desired)
    services = {s.name: s for s in desired.services}
    plans_wanted = {p.name: p for p in desired.plans}
    consumers_wanted = {c.name: c for c in desired.consumers}
    rules_wanted = {r.name: r for r in desired.rate_limit_rules}
    routes_wanted = {r.name: r for r in desired.routes}
    route_repo = RouteRepository(session)
    service_repo = ServiceRepository(session)
    plan_repo = PlanRepository(session)
    consumer_repo = ConsumerRepository(session)
    rule_repo = RateLimitRuleRepository(session)
    revoked: list[str] = []

    # An OAuth client moving between consumers is first unlinked, so the unique link never
    # sees two holders mid-way.
    for change in changes:
        relinked = any(name == "oauth_client_id" for name, _, _ in change.fields)
        if change.kind == "consumer" and change.action == "update" and relinked:
            consumer = await consumer_repo.by_name(change.name)
            assert consumer is not None
            consumer.oauth_client_id = None
    await session.flush()

    for change in changes:
        if change.kind == "service":
            await _apply_service(service_repo, change, services.get(change.name))
        elif change.kind == "instance":
            await _apply_instance(service_repo, change, services)
        elif change.kind == "plan":
            await _apply_plan(plan_repo, change, plans_wanted.get(change.name))
        elif change.kind == "consumer":
            if change.action == "delete":
                consumer = await consumer_repo.by_name(change.name)
                assert consumer is not None
                keys = await ApiKeyRepository(session).of_consumer(consumer.consumer_id)
                revoked += [k.prefix for k in keys]
                await consumer_repo.delete(consumer)
            else:
                await _apply_consumer(
                    consumer_repo, plan_repo, change, consumers_wanted[change.name]
                )
        elif change.kind == "route":
            await _apply_route(route_repo, change, routes_wanted.get(change.name))
        else:
            await _apply_rule(rule_repo, change, rules_wanted.get(change.name))
    await session.flush()
    return Applied(changes=changes, revoked_prefixes=revoked)


async def _apply_route(repo: RouteRepository, change: Change, wanted: RouteEntry | None) -> None:
    route = await repo.by_name(change.name)
    if change.action == "delete":
        assert route is not None
        await repo.delete(route)
        return
    assert wanted is not None
    declaration = RouteDeclaration.model_validate(wanted.model_dump())
    if route is None:
        await repo.add(declaration)
    else:
        await repo.replace(route, declaration)


async def _apply_service(
    repo: ServiceRepository, change: Change, wanted: ServiceEntry | None
) -> None:
    if change.action == "delete":
        service = await repo.by_name(change.name)
        assert service is not None
        await repo.delete(service)
        return
    assert wanted is not None
    policy = wanted.policy.model_dump(mode="json", exclude_unset=True)
    if change.action == "create":
        await repo.add(
            Service(
                name=wanted.name,
                timeout_ms=wanted.timeout_ms,
                balancer=wanted.balancer,
                health_path=wanted.health_path,
                policy=policy,
                instances=[_instance_row(i) for i in wanted.instances],
            )
        )
        return
    service = await repo.by_name(change.name)
    assert service is not None
    service.timeout_ms = wanted.timeout_ms
    service.balancer = wanted.balancer
    service.health_path = wanted.health_path
    service.policy = policy
    await repo.session.flush()


def _instance_row(instance: InstanceCreate) -> ServiceInstance:
    return ServiceInstance(url=instance.url, weight=instance.weight, enabled=instance.enabled)


async def _apply_instance(
    repo: ServiceRepository, change: Change, services: dict[str, ServiceEntry]
) -> None:
    service_name, url = change.name.split(" ", 1)
    service = await repo.by_name(service_name)
    assert service is not None
    if change.action == "create":
        wanted = next(i for i in services[service_name].instances if i.url == url)
        await repo.add_instance(service, _instance_row(wanted))
        return
    row = next(i for i in service.instances if i.url == url)
    if change.action == "delete":
        await repo.delete_instance(service, row)
        return
    wanted = next(i for i in services[service_name].instances if i.url == url)
    row.weight = wanted.weight
    row.enabled = wanted.enabled
    await repo.session.flush()


async def _apply_plan(repo: PlanRepository, change: Change, wanted: PlanEntry | None) -> None:
    if change.action == "delete":
        plan = await repo.by_name(change.name)
        assert plan is not None
        await repo.delete(plan)
        return
    assert wanted is not None
    if change.action == "create":
        await repo.add(Plan(**wanted.model_dump()))
        return
    plan = await repo.by_name(change.name)
    assert plan is not None
    for name, value in wanted.model_dump().items():
        setattr(plan, name, value)
    await repo.session.flush()


async def _apply_consumer(
    repo: ConsumerRepository, plans: PlanRepository, change: Change, wanted: ConsumerEntry
) -> None:
    plan = await plans.by_name(wanted.plan) if wanted.plan is not None else None
    fields = {
        "plan_id": plan.plan_id if plan is not None else None,
        "account_ids": list(wanted.account_ids),
        "oauth_client_id": wanted.oauth_client_id,
        "enabled": wanted.enabled,
    }
    if change.action == "create":
        await repo.add(Consumer(name=wanted.name, **fields))
        return
    consumer = await repo.by_name(change.name)
    assert consumer is not None
    for name, value in fields.items():
        setattr(consumer, name, value)
    await repo.save(consumer)


async def _apply_rule(
    repo: RateLimitRuleRepository, change: Change, wanted: RateLimitRuleEntry | None
) -> None:
    if change.action == "delete":
        rule = await repo.by_name(change.name)
        assert rule is not None
        await repo.delete(rule)
        return
    assert wanted is not None
    # The table keeps "" for "no plan".
    fields = {**wanted.model_dump(), "plan_name": wanted.plan_name or ""}
    if change.action == "create":
        await repo.add(RateLimitRule(**fields))
        return
    rule = await repo.by_name(change.name)
    assert rule is not None
    await repo.update(rule, fields)


def json_schema() -> dict[str, Any]:
    """The document's JSON Schema, as published in `schemas/gateway-config.schema.json`."""
    return GatewayConfig.model_json_schema()

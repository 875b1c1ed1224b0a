"""Tables of the config store. Changed only through Alembic migrations."""

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The largest value an `Integer` column holds on every backend (PostgreSQL's is 32 bits).
INTEGER_MAX = 2**31 - 1

# An id is never handed out twice, also after a delete: ids are in admin paths, and some key
# state outside the database (quota and rate limit counters). SQLite needs AUTOINCREMENT for
# that; PostgreSQL's sequences never reuse a value.
_IDS_NEVER_REUSED = {"sqlite_autoincrement": True}


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Service(Base):
    """A platform service the gateway calls, by name."""

    __tablename__ = "services"
    __table_args__ = _IDS_NEVER_REUSED

    service_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    timeout_ms: Mapped[int] = mapped_column(Integer, default=2000)
    balancer: Mapped[str] = mapped_column(String(32), default="round_robin")
    health_path: Mapped[str] = mapped_column(String(200), default="/health")
    # Traffic policies of this service (retries, breaker, bulkhead, health checks), as JSON.
    policy: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )
    instances: Mapped[list["ServiceInstance"]] = relationship(
        back_populates="service",
        cascade="all, delete-orphan",
        order_by="ServiceInstance.instance_id",
        lazy="selectin",
    )


class ServiceInstance(Base):
    """One address at which a service answers."""

    __tablename__ = "service_instances"
    __table_args__ = (UniqueConstraint("service_id", "url"), _IDS_NEVER_REUSED)

    instance_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(
        ForeignKey("services.service_id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(500))
    weight: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    service: Mapped[Service] = relationship(back_populates="instances")


class Plan(Base):
    """What a consumer may do: rates, quotas and scopes."""

    __tablename__ = "plans"
    __table_args__ = _IDS_NEVER_REUSED

    plan_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    rate_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota_per_month: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Consumer(Base):
    """A partner system or other client of the gateway."""

    __tablename__ = "consumers"
    __table_args__ = _IDS_NEVER_REUSED

    consumer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("plans.plan_id", ondelete="RESTRICT"), nullable=True
    )
    # Accounts this consumer may act on (partner orders).
    account_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The identity provider's client whose client-credentials tokens act as this consumer.
    oauth_client_id: Mapped[str | None] = mapped_column(
        String(200), nullable=True, unique=True, index=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    plan: Mapped[Plan | None] = relationship(lazy="selectin")


class ApiKey(Base):
    """A consumer's API key: only its hash is stored; the prefix identifies it in lists."""

    __tablename__ = "api_keys"
    __table_args__ = _IDS_NEVER_REUSED

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consumer_id: Mapped[int] = mapped_column(
        ForeignKey("consumers.consumer_id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RateLimitRule(Base):
    """A rate limit configured in the store: whom it keys on, where it applies, how much."""

    __tablename__ = "rate_limit_rules"
    __table_args__ = _IDS_NEVER_REUSED

    rule_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # consumer | plan | user | address | route
    key_by: Mapped[str] = mapped_column(String(16))
    # Path prefix the rule applies to, e.g. "/partner/v1/quotes"; "" for every route.
    route_prefix: Mapped[str] = mapped_column(String(200), default="")
    # For key_by=plan: the plan's name; otherwise empty.
    plan_name: Mapped[str] = mapped_column(String(64), default="")
    limit: Mapped[int] = mapped_column(Integer)
    period_s: Mapped[float] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Route(Base):
    """A pass-through route: its name, its switch, and the rest of its declaration
    (`app.store.route_declarations.RouteDeclaration.stored()`) as one JSON document."""

    __tablename__ = "routes"
    __table_args__ = _IDS_NEVER_REUSED

    route_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    declaration: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )


class ConfigRevision(Base):
    """One row: the config store's revision, raised in the transaction of every committed
    change, so a process knows by one number whether its snapshot is behind."""

    __tablename__ = "config_revision"

    revision_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class DeveloperSignup(Base):
    """A developer's request for access to the partner API through the portal (`app.portal`):
    who asked (the identity provider's subject), its state, and the consumer it became."""

    __tablename__ = "developer_signups"
    __table_args__ = _IDS_NEVER_REUSED

    signup_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200), default="")
    company: Mapped[str] = mapped_column(String(100), default="")
    intended_use: Mapped[str] = mapped_column(String(1000), default="")
    # pending | approved | rejected
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    consumer_id: Mapped[int | None] = mapped_column(
        ForeignKey("consumers.consumer_id", ondelete="SET NULL"), nullable=True
    )
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class AuditEvent(Base):
    """One action taken through the portal (a sign-up decided, a key created, renamed,
    rotated or revoked): who did what to what, kept after the consumer is gone."""

    __tablename__ = "audit_events"
    __table_args__ = _IDS_NEVER_REUSED

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    # No foreign key: the record outlives the consumer it speaks of.
    consumer_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

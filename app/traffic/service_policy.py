"""The traffic policy of one upstream service: retries, breaker, bulkhead, health checks.

Stored as JSON in `services.policy`; every field has a default, so `{}` is a valid policy
and an operator sets only what differs. Validated when written (admin API) and again when
the snapshot is built, where an unreadable stored policy falls back to the defaults.
"""

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

RETRYABLE_STATUSES = (502, 503, 504)


class _Policy(BaseModel):
    # Numbers and flags are strict (`StrictInt`, `StrictFloat`, `StrictBool`): a JSON `true`
    # is not one attempt, nor "5" five. Not `strict=True`: stored JSON arrays stay tuples.
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Policy):
    """When and how often a failed call is tried again."""

    # Attempts in total, the first one included; 1 switches retries off.
    attempts: StrictInt = Field(3, ge=1, le=10)
    base_backoff_ms: StrictFloat = Field(20, ge=0, le=10_000)
    max_backoff_ms: StrictFloat = Field(400, ge=0, le=60_000)
    # Retries may add at most this share of the service's calls, e.g. 0.2 = 20 %.
    budget_ratio: StrictFloat = Field(0.2, ge=0, le=10)
    # ...plus this many retries per second, so a quiet service can still retry.
    budget_min_per_s: StrictFloat = Field(3.0, ge=0, le=1000)
    retry_on: tuple[StrictInt, ...] = Field(RETRYABLE_STATUSES)
    retry_on_connect_errors: StrictBool = True
    retry_on_timeouts: StrictBool = True
    # Each attempt waits at most this long (and at most what is left of the service's
    # `timeout_ms` and the request's deadline, which bound the call with all its attempts);
    # None: an attempt may take the whole of it, leaving no room to retry after a timeout.
    per_try_timeout_ms: StrictFloat | None = Field(None, ge=10, le=60_000)

    @model_validator(mode="after")
    def _statuses_are_server_errors(self) -> "RetryPolicy":
        for status in self.retry_on:
            if not 500 <= status <= 599:
                raise ValueError(f"retry_on may only name 5xx statuses, not {status}")
        if self.max_backoff_ms < self.base_backoff_ms:
            raise ValueError("max_backoff_ms must not be below base_backoff_ms")
        return self


class BreakerPolicy(_Policy):
    """When an instance's circuit opens, and how it is tried again."""

    consecutive_failures: StrictInt = Field(5, ge=1, le=1000)
    # Opens when this share of the calls in the rolling window failed...
    failure_ratio: StrictFloat = Field(0.5, gt=0, le=1)
    # Ten buckets of window_s / 10 seconds each: a window too short to divide is refused.
    window_s: StrictFloat = Field(10, ge=0.1, le=600)
    # ...and the window holds at least this many calls.
    minimum_calls: StrictInt = Field(20, ge=1, le=100_000)
    cool_down_ms: StrictFloat = Field(5_000, ge=0, le=600_000)
    half_open_probes: StrictInt = Field(1, ge=1, le=100)


class BulkheadPolicy(_Policy):
    """How many calls to the service may be in flight from one gateway process."""

    max_concurrent: StrictInt = Field(64, ge=1, le=10_000)
    max_wait_ms: StrictFloat = Field(50, ge=0, le=60_000)


class HealthCheckPolicy(_Policy):
    """The active health check: a GET on every instance at an interval."""

    enabled: StrictBool = True
    # None: the service's `health_path`.
    path: str | None = Field(None, pattern=r"^/[!-~]*$", max_length=200)
    interval_ms: StrictFloat = Field(2_000, ge=50, le=3_600_000)
    timeout_ms: StrictFloat = Field(1_000, ge=10, le=60_000)
    healthy_threshold: StrictInt = Field(2, ge=1, le=100)
    unhealthy_threshold: StrictInt = Field(2, ge=1, le=100)


class EjectionPolicy(_Policy):
    """Passive health: an instance failing this many calls in a row leaves rotation for a while."""

    consecutive_failures: StrictInt = Field(5, ge=1, le=1000)
    ejection_ms: StrictFloat = Field(10_000, ge=0, le=3_600_000)


class DnsDiscoveryPolicy(_Policy):
    """Instances found in DNS, in addition to the configured ones."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[!-~]+$",
        examples=["_http._tcp.market-data.internal"],
    )
    record: Literal["A", "SRV"] = "A"
    # For A records: the port every address listens on.
    port: StrictInt = Field(80, ge=1, le=65535)
    scheme: Literal["http", "https"] = "http"
    refresh_ms: StrictFloat = Field(10_000, ge=100, le=3_600_000)


class ServicePolicy(_Policy):
    """Every traffic policy of one service; `{}` means all defaults."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "retries": {"attempts": 3, "budget_ratio": 0.2},
                    "breaker": {"consecutive_failures": 5, "cool_down_ms": 5000},
                    "bulkhead": {"max_concurrent": 64, "max_wait_ms": 50},
                    "health_check": {"interval_ms": 2000, "unhealthy_threshold": 2},
                    "ejection": {"consecutive_failures": 5},
                }
            ]
        },
    )

    retries: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    bulkhead: BulkheadPolicy = BulkheadPolicy()
    health_check: HealthCheckPolicy = HealthCheckPolicy()
    ejection: EjectionPolicy = EjectionPolicy()
    dns: DnsDiscoveryPolicy | None = None

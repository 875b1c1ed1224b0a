"""The catalogue of problem types: every `type` the gateway answers, what it means, and the
extra fields it carries, as one typed model per type.

A problem's `type` is `/problems/<slug>`, relative to the gateway, and it resolves: the
gateway answers `GET /problems/<slug>` with a page describing it (`app.openapi`). The
OpenAPI documents name, for each error status, the problem types it may carry
(`PROBLEMS_BY_STATUS`), each with its own schema and example.
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.errors import PROBLEM_BASE, FieldError

_REQUEST_ID = "5f0c6a0e9b1d4c3e8a7b6c5d4e3f2a1b"


class BaseProblem(BaseModel):
    """RFC 9457 problem details: the members every problem has."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="The problem type: a URI reference (relative to the gateway) to its page"
    )
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request")
    instance: str = Field(description="The request path that caused the problem")
    request_id: str = Field(description="The request's id, as in `X-Request-ID` and the logs")


class ValidationProblem(BaseProblem):
    type: Literal["/problems/validation-error"]
    errors: list[FieldError] = Field(description="Each rejected input")


class MalformedBodyProblem(BaseProblem):
    type: Literal["/problems/malformed-body"]
    errors: list[FieldError] = Field(description="Where the body could not be read")


class BadRequestProblem(BaseProblem):
    type: Literal["/problems/bad-request"]


class SuspiciousPathProblem(BaseProblem):
    type: Literal["/problems/suspicious-path"]


class UnauthorizedProblem(BaseProblem):
    type: Literal["/problems/unauthorized"]


class ForbiddenProblem(BaseProblem):
    type: Literal["/problems/forbidden"]
    missing_scopes: list[str] | None = Field(
        None, description="The scopes the operation needs that the credential lacks"
    )
    missing_roles: list[str] | None = Field(
        None, description="The roles the operation needs that the user lacks"
    )


class NotFoundProblem(BaseProblem):
    type: Literal["/problems/not-found"]
    symbol: str | None = Field(None, description="The symbol that is not listed")


class MethodNotAllowedProblem(BaseProblem):
    type: Literal["/problems/method-not-allowed"]


class NotAcceptableProblem(BaseProblem):
    type: Literal["/problems/not-acceptable"]
    available: list[str] | None = Field(None, description="The media types this route offers")


class ConflictProblem(BaseProblem):
    type: Literal["/problems/conflict"]
    field: str | None = Field(None, description="The field whose value conflicts")
    consumer_id: str | None = Field(None, description="The consumer already holding the value")
    instance_id: str | None = Field(None, description="The existing service instance")
    route_id: str | None = Field(None, description="The existing route")
    rule_id: str | None = Field(None, description="The existing rate-limit rule")
    consumers: list[str] | None = Field(None, description="Consumers still on the plan")
    rate_limit_rules: list[str] | None = Field(None, description="Rules still naming the plan")


class PayloadTooLargeProblem(BaseProblem):
    type: Literal["/problems/payload-too-large"]


class RateLimitedProblem(BaseProblem):
    type: Literal["/problems/rate-limited"]
    limit: str | int | None = Field(
        None,
        description=("A rate limit's name (or `in-flight`); for a used-up quota, the quota's size"),
    )
    quota: int | Literal["daily", "monthly"] | None = Field(
        None,
        description="A rate limit's requests per window; for a used-up quota, its period",
    )
    window_s: float | None = Field(None, description="The rate limit's window, in seconds")
    retry_after_s: int | None = Field(None, description="Seconds until a retry may pass")
    max_in_flight: int | None = Field(None, description="Requests the plan allows at once")
    resets_at: str | None = Field(None, description="When the used-up quota resets (ISO 8601)")


class InternalErrorProblem(BaseProblem):
    type: Literal["/problems/internal-error"]


class UpstreamFields(BaseProblem):
    service: str = Field(description="The platform service that failed or refused")
    reason: Literal["circuit-open", "bulkhead-full", "deadline-exceeded"] | None = Field(
        None, description="Why the gateway gave up, when it did so itself"
    )


class BadGatewayProblem(UpstreamFields):
    type: Literal["/problems/bad-gateway"]


class UpstreamUnavailableProblem(UpstreamFields):
    type: Literal["/problems/upstream-unavailable"]


class UpstreamTimeoutProblem(UpstreamFields):
    type: Literal["/problems/upstream-timeout"]


class UpstreamRejectedProblem(BaseProblem):
    type: Literal["/problems/upstream-rejected"]
    service: str = Field(description="The platform service that refused the request")


class ServiceUnavailableProblem(BaseProblem):
    type: Literal["/problems/service-unavailable"]


class ConfigStoreUnavailableProblem(BaseProblem):
    type: Literal["/problems/config-store-unavailable"]


class SectionLateProblem(BaseProblem):
    type: Literal["/problems/section-late"]


class BatchDeadlineProblem(BaseProblem):
    type: Literal["/problems/batch-deadline"]


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    title: str
    statuses: tuple[int, ...]
    description: str
    model: type[BaseProblem]
    example: dict[str, Any]

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def example_for(self, status: int, *, instance: str = "/web/v1/orders") -> dict[str, Any]:
        return {
            "type": self.uri,
            "title": self.title,
            "status": status,
            "instance": instance,
            "request_id": _REQUEST_ID,
            **self.example,
        }


def _upstream(service: str, **extra: Any) -> dict[str, Any]:
    return {"service": service, **extra}


CATALOGUE: tuple[ProblemType, ...] = (
    ProblemType(
        "bad-request",
        "Bad request",
        (400,),
        "The request cannot be taken as it is.",
        BadRequestProblem,
        {"detail": "The cursor is not one this list handed out."},
    ),
    ProblemType(
        "malformed-body",
        "Malformed request body",
        (400,),
        "The body is not UTF-8, or not JSON at all. A body that parses but breaks the schema "
        "is a `validation-error` instead.",
        MalformedBodyProblem,
        {
            "detail": "The body is not JSON: Expecting value at character 0.",
            "errors": [{"field": "body", "message": "not JSON: Expecting value at character 0"}],
        },
    ),
    ProblemType(
        "suspicious-path",
        "Path refused",
        (400,),
        "A pass-through route's path holds an encoded separator or a dot segment; it is "
        "refused rather than passed upstream.",
        SuspiciousPathProblem,
        {"detail": "The path holds an encoded slash."},
    ),
    ProblemType(
        "unauthorized",
        "Authentication required",
        (401,),
        "No credential, or one the gateway does not accept (expired, revoked, unknown). "
        "`WWW-Authenticate` says which schemes are accepted.",
        UnauthorizedProblem,
        {"detail": "The bearer token has expired."},
    ),
    ProblemType(
        "forbidden",
        "Not allowed",
        (403,),
        "The caller is known but may not do this: a missing scope or role, an account not "
        "linked, or a cookie-authenticated unsafe call without its `X-CSRF-Token`.",
        ForbiddenProblem,
        {
            "detail": "The caller lacks the scope(s) this operation needs: orders:write.",
            "missing_scopes": ["orders:write"],
        },
    ),
    ProblemType(
        "not-found",
        "Not found",
        (404,),
        "Nothing exists at this address.",
        NotFoundProblem,
        {"detail": "No listed symbol ZZZZ.", "symbol": "ZZZZ"},
    ),
    ProblemType(
        "method-not-allowed",
        "Method not allowed",
        (405,),
        "The path exists but not for this method; `Allow` lists the methods it takes.",
        MethodNotAllowedProblem,
        {"detail": "DELETE is not allowed here; allowed: GET"},
    ),
    ProblemType(
        "not-acceptable",
        "Not acceptable",
        (406,),
        "The `Accept` header names no media type this route answers in.",
        NotAcceptableProblem,
        {
            "detail": "This list is available as application/json or text/csv.",
            "available": ["application/json", "text/csv"],
        },
    ),
    ProblemType(
        "conflict",
        "Conflict",
        (409,),
        "The request conflicts with what exists (a name taken, a plan still in use).",
        ConflictProblem,
        {"detail": "A route named 'quotes' already exists.", "route_id": "rt-1"},
    ),
    ProblemType(
        "payload-too-large",
        "Request body too large",
        (413,),
        "The body is larger than the route accepts.",
        PayloadTooLargeProblem,
        {"detail": "The body exceeds 65536 bytes."},
    ),
    ProblemType(
        "validation-error",
        "Invalid request",
        (422,),
        "A parameter or body field failed validation; `errors` names each one.",
        ValidationProblem,
        {
            "detail": "body.limit_price: limit_price is required for limit orders",
            "errors": [
                {"field": "body.limit_price", "message": "limit_price is required for limit orders"}
            ],
        },
    ),
    ProblemType(
        "upstream-rejected",
        "Request rejected",
        (400, 404, 409, 422),
        "The platform service refused the request itself; its status and detail pass "
        "through, since they describe the request rather than a failure.",
        UpstreamRejectedProblem,
        {"detail": "Insufficient buying power for this order.", "service": "orders"},
    ),
    ProblemType(
        "rate-limited",
        "Too many requests",
        (429,),
        "A rate limit, the in-flight cap or the plan's quota is exhausted; `Retry-After` "
        "says when to try again.",
        RateLimitedProblem,
        {
            "detail": "Rate limit 'user' is exhausted: 60 requests per 60 s; retry in 12 s.",
            "limit": "user",
            "quota": 60,
            "window_s": 60,
            "retry_after_s": 12,
        },
    ),
    ProblemType(
        "internal-error",
        "Internal error",
        (500,),
        "The gateway failed; the request id names the failure in its logs.",
        InternalErrorProblem,
        {
            "detail": "The gateway failed to handle this request; the request id names it "
            "in the logs."
        },
    ),
    ProblemType(
        "bad-gateway",
        "Upstream service error",
        (502,),
        "A platform service answered, but not with something usable.",
        BadGatewayProblem,
        {"detail": "portfolio answered 500.", **_upstream("portfolio")},
    ),
    ProblemType(
        "upstream-unavailable",
        "Upstream service unavailable",
        (503,),
        "No instance of a platform service could be reached, its circuit is open, or it "
        "said it is unavailable; `reason` says which when the gateway decided.",
        UpstreamUnavailableProblem,
        {
            "detail": "portfolio is unavailable: its circuit is open.",
            **_upstream("portfolio", reason="circuit-open"),
        },
    ),
    ProblemType(
        "service-unavailable",
        "Service unavailable",
        (503,),
        "The gateway cannot serve the request now (draining, overloaded, its limits "
        "cannot be checked); `Retry-After` may say when to try again.",
        ServiceUnavailableProblem,
        {"detail": "Rate limits cannot be checked right now; try again shortly."},
    ),
    ProblemType(
        "config-store-unavailable",
        "Config store unavailable",
        (503,),
        "The configuration database did not answer, or not in time.",
        ConfigStoreUnavailableProblem,
        {"detail": "The config store did not answer in time."},
    ),
    ProblemType(
        "upstream-timeout",
        "Upstream service timed out",
        (504,),
        "A platform service did not answer before the request's deadline.",
        UpstreamTimeoutProblem,
        {
            "detail": "The request's deadline passed before portfolio answered.",
            **_upstream("portfolio", reason="deadline-exceeded"),
        },
    ),
    ProblemType(
        "section-late",
        "Section late",
        (504,),
        "An optional section of a view missed its budget; views list it in `degraded`.",
        SectionLateProblem,
        {"detail": "The section took longer than its 0.3 s budget."},
    ),
    ProblemType(
        "batch-deadline",
        "Not run before the batch's deadline",
        (504,),
        "A batch sub-request was not run before the batch's deadline.",
        BatchDeadlineProblem,
        {"detail": "The batch's deadline passed before this request ran."},
    ),
)

PROBLEM_TYPES: dict[str, ProblemType] = {problem.slug: problem for problem in CATALOGUE}


def problems_for(status: int) -> list[ProblemType]:
    """The problem types an error status may carry, the most usual first."""
    return [problem for problem in CATALOGUE if status in problem.statuses]

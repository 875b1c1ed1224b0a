"""Shed load when this process has too much in flight, and finish what admission started.

A route's access rule admits the request (`app.traffic.policies.AdmissionControl`) and
leaves in the scope the `RateLimit` headers of an admitted request and the in-flight slot
it holds. A dependency cannot add headers to a response a handler returns itself
(pass-through bytes), nor hold a slot until the last body byte is sent; the edge does both
(`app.middleware.edge`).
"""

from starlette.types import Scope

from app.errors import ServiceUnavailable
from app.traffic.policies import RELEASE_SCOPE_KEY

# The gateway's traffic: the admin API, health checks and docs stay reachable under overload.
TRAFFIC_PREFIXES = ("/web/", "/mobile/", "/partner/", "/api/")


def overloaded() -> ServiceUnavailable:
    """The answer above the gateway-wide in-flight cap."""
    return ServiceUnavailable(
        "The gateway has too many requests in flight; try again shortly.",
        headers={"Retry-After": "1"},
    )


def release_slot(scope: Scope) -> None:
    """Give back the caller's in-flight slot, when admission claimed one."""
    release = scope.get(RELEASE_SCOPE_KEY)
    if release is not None:
        release()

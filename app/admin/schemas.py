"""Schema parts more than one admin resource uses.

Each resource module (`services`, `plans`, `consumers`, `rate_limits`, `traffic`) holds its
own request and response bodies; what two or more of them share is here.
"""

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Names of services, plans and rate limit rules: lower case, digits and dashes.
NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"


def _instance_url(value: str) -> str:
    """An instance is an origin: scheme, host and port, nothing the caller would append to."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise ValueError("scheme must be http or https")
    if not parts.hostname:
        raise ValueError("a host is required")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials are not allowed in an instance URL")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError("an instance URL has no path, query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


InstanceUrl = Annotated[
    str,
    Field(max_length=500, examples=["http://10.0.3.17:8080"]),
    AfterValidator(_instance_url),
]
Weight = Annotated[int, Field(ge=1, le=100, description="Share of traffic, 1..100")]


class Patch(BaseModel):
    """A partial update: omitted fields stay as they are; null is not a value."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only called for fields the client sent: an explicit null would erase a required value.
        if value is None:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value

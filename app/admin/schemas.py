"""Schema parts more than one admin resource uses.

Each resource module (`services`, `plans`, `consumers`, `rate_limits`, `traffic`) holds its
own request and response bodies; what two or more of them share is here.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictInt,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.store.database import stored_utc
from app.store.models import INTEGER_MAX

# Names of services, plans and rate limit rules: lower case, digits and dashes.
NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"


def _instance_url(value: str) -> str:
    """An instance is an origin: scheme, host and port, nothing the caller would append to."""
    if any(c.isspace() or not c.isprintable() for c in value.strip()):
        raise ValueError("spaces and control characters are not allowed in an instance URL")
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
Weight = Annotated[StrictInt, Field(ge=1, le=100, description="Share of traffic, 1..100")]


def _in_utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone (they were written in UTC).
    return stored_utc(value).astimezone(UTC)


# Every date-time the admin API answers with: in UTC, written with `Z`, whichever store
# and whichever read path (create, get, list, after a change) it came from.
UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]

# The id of a stored row in a path. Beyond the store's integers no row can exist: a 422,
# never a database error.
RowId = Annotated[int, Path(ge=1, le=INTEGER_MAX)]


class Patch(BaseModel):
    """A partial update: omitted fields stay as they are; null clears the fields named in
    `clearable` and is refused for every other one (its schema does not offer null)."""

    model_config = ConfigDict(extra="forbid")

    clearable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        # Only called for fields the client sent: an explicit null would erase a required value.
        if value is None and info.field_name not in cls.clearable:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The fields are `X | None` in Python, so that an omitted one is None; the schema
        offers null only where it clears something."""
        json_schema = handler(core_schema)
        properties = handler.resolve_ref_schema(json_schema).get("properties", {})
        for name, field_schema in properties.items():
            if name not in cls.clearable:
                _drop_null(field_schema)
        return json_schema


def _drop_null(field_schema: dict[str, Any]) -> None:
    branches = field_schema.pop("anyOf", None)
    if branches is not None:
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            field_schema.update(kept[0])
        else:
            field_schema["anyOf"] = kept
    if "default" in field_schema and field_schema["default"] is None:
        del field_schema["default"]

"""What the portal's pages show and what its forms accept."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData

from app.security.principal import Principal
from app.store.database import stored_utc
from app.store.models import ApiKey

# Messages a page shows after a redirect (`?notice=...`): fixed texts, never the query's.
NOTICES: dict[str, str] = {
    "requested": "Thanks! Your request is with an administrator; this page shows its state.",
    "already-requested": "You have already asked for access.",
    "approved": "Your access is approved: create a key to start calling the API.",
    "key-renamed": "The key was renamed.",
    "key-revoked": "The key was revoked; requests with it are refused from now on.",
    "signup-approved": "The developer was approved and has a consumer on the plan chosen.",
    "signup-rejected": "The sign-up was rejected.",
    "signed-out": "You are signed out.",
}

_TEXT = r"^[^\x00-\x1f\x7f]*$"


class PortalRefusal(Exception):
    """A request the portal answers with its error page: the status and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Visitor:
    """The signed-in user of the portal, from the web session."""

    principal: Principal
    csrf_token: str
    name: str
    email: str

    @property
    def is_admin(self) -> bool:
        return "admin" in self.principal.roles


class AccessRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=_TEXT)
    email: str = Field(max_length=200, pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
    company: str = Field("", max_length=100, pattern=_TEXT)
    intended_use: str = Field(min_length=10, max_length=1000)


class KeyName(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=_TEXT)


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="ignore")

    overlap_hours: int = Field(ge=0)


class SignupDecision(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    decision: Literal["approve", "reject"]
    plan: str = Field("", max_length=64)
    reason: str = Field("", max_length=500, pattern=_TEXT)


Form = TypeVar("Form", bound=BaseModel)

_MESSAGES = {
    "string_too_short": "is required",
    "missing": "is required",
    "string_too_long": "is too long",
    "string_pattern_mismatch": "has characters or a form it cannot take",
    "int_parsing": "must be a whole number",
    "greater_than_equal": "must not be negative",
    "literal_error": "is not one of the choices",
}


def parse_form(model: type[Form], form: FormData) -> tuple[Form | None, dict[str, str]]:
    """The form as `model`, or None and a message per field that was wrong."""
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        return model.model_validate(fields), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "form"
            errors.setdefault(field, _MESSAGES.get(error["type"], "is not valid"))
        return None, errors


KeyStatus = Literal["active", "expiring", "expired", "revoked"]


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: int
    prefix: str
    name: str
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> "KeyRow":
        expires_at = stored_utc(key.expires_at)
        status: KeyStatus = "active"
        if key.revoked_at is not None:
            status = "revoked"
        elif expires_at is not None and expires_at <= datetime.now(UTC):
            status = "expired"
        elif expires_at is not None:
            status = "expiring"
        return cls(
            key_id=key.key_id,
            prefix=key.prefix,
            name=key.name,
            status=status,
            created_at=stored_utc(key.created_at),
            expires_at=expires_at,
            revoked_at=stored_utc(key.revoked_at),
        )

    @property
    def usable(self) -> bool:
        return self.status in {"active", "expiring"}

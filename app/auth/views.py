"""What the /auth endpoints answer: the caller as the gateway sees it, and the web session."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.security.principal import Principal


class PrincipalSummary(BaseModel):
    """Who the gateway takes the caller to be."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "alice",
                    "kind": "user",
                    "credential": "session",
                    "roles": ["trader"],
                    "scopes": ["openid", "profile"],
                    "account_ids": ["ACC-1001"],
                }
            ]
        }
    )

    subject: str
    kind: str
    credential: str
    roles: list[str]
    scopes: list[str]
    account_ids: list[str]

    @classmethod
    def of(cls, principal: Principal) -> "PrincipalSummary":
        return cls(
            subject=principal.subject,
            kind=principal.kind,
            credential=principal.credential,
            roles=sorted(principal.roles),
            scopes=sorted(principal.scopes),
            account_ids=list(principal.account_ids),
        )


class SessionInfo(BaseModel):
    """The logged-in user and the CSRF token to send as `X-CSRF-Token` on state changes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user": PrincipalSummary.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                    "name": "Alice Trader",
                    "csrf_token": "Vw2b8Yc8b5I3k0l5dZx9QmN4rT7uJ1pA6sE2fH3gK8o",
                    "expires_at": "2026-11-26T18:00:00Z",
                }
            ]
        }
    )

    user: PrincipalSummary
    name: str | None = None
    csrf_token: str
    expires_at: datetime = Field(description="When the session ends, whatever the activity")

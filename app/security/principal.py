"""Who is calling: the identity every policy decision is made on."""

from dataclasses import dataclass, field
from typing import Literal

PrincipalKind = Literal["user", "consumer", "anonymous"]
Credential = Literal["session", "bearer", "api_key", "bootstrap", "none"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `account_ids` are the trading accounts the caller may act on: a user's own account, or
    the accounts linked to a partner consumer. They come from the identity, never from a
    request parameter.
    """

    subject: str
    kind: PrincipalKind
    credential: Credential
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    account_ids: tuple[str, ...] = ()
    consumer_id: int | None = None
    plan: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def account_id(self) -> str | None:
        """The caller's own account, for users; None when it has none or several."""
        return self.account_ids[0] if len(self.account_ids) == 1 else None

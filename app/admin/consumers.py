"""Admin endpoints over consumers and their API keys.

A key is shown exactly once, in the body of the 201 that creates it; the store keeps only
its hash, and lists show the public prefix. Revoking a key commits, then publishes a change
notice and marks its prefix revoked in Redis (checked by every process on every request).

A consumer may also name the OAuth client (`oauth_client_id`, one consumer per client) whose
client-credentials tokens then act as that consumer: its plan, quota and accounts.
"""

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from app.admin.changes import ChangeNoticesDep, PolicyChainDep, flush_change, stage_change
from app.admin.plans import plan_by_name
from app.admin.schemas import NAME_PATTERN, Patch, RowId, UtcDateTime
from app.deps import RedisDep, SessionDep, SettingsDep
from app.domain import ACCOUNT_ID_PATTERN
from app.errors import Conflict, NotFound, problem_responses
from app.policy.chain import PolicyChain
from app.security.apikeys import announce_revocation, issue_key, key_hasher
from app.shared.redis import RedisUnavailable
from app.store.consumers import ApiKeyRepository, ConsumerRepository, PlanRepository
from app.store.database import after_commit, stored_utc
from app.store.models import ApiKey, Consumer
from app.store.rate_limit_rules import RateLimitRuleRepository

logger = logging.getLogger("gateway.admin")

router = APIRouter(prefix="/consumers", tags=["admin: consumers"])

CONSUMER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{1,99}$"

ConsumerName = Annotated[str, Field(pattern=CONSUMER_NAME_PATTERN, examples=["acme-trading"])]
PlanRef = Annotated[str, Field(pattern=NAME_PATTERN, examples=["partner-basic"])]
AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN, examples=["ACC-2001"])]
# Visible ASCII: the `client_id` claim of the provider's tokens is compared to it exactly.
OAuthClientId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[!-~]+$",
        examples=["partner-acme"],
        description=(
            "The identity provider's client whose client-credentials tokens act as this "
            "consumer (its plan, quota and accounts)"
        ),
    ),
]


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


AccountIds = Annotated[
    list[AccountId],
    Field(max_length=100, description="Accounts the consumer may act on"),
    AfterValidator(_distinct),
]


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2027-01-31T00:00:00Z")
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value.astimezone(UTC)


class ConsumerCreate(BaseModel):
    """A new consumer, on a plan, with the accounts it may act on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "acme-trading",
                    "plan": "partner-basic",
                    "account_ids": ["ACC-2001"],
                    "oauth_client_id": "partner-acme",
                }
            ]
        },
    )

    name: ConsumerName
    plan: PlanRef | None = None
    account_ids: AccountIds = Field(default_factory=list)
    oauth_client_id: OAuthClientId | None = None
    enabled: StrictBool = True


class ConsumerUpdate(Patch):
    """Fields to change; `plan: null` drops the plan, `oauth_client_id: null` unlinks the client."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    clearable = frozenset({"plan", "oauth_client_id"})

    plan: PlanRef | None = None
    account_ids: AccountIds | None = None
    oauth_client_id: OAuthClientId | None = None
    enabled: StrictBool | None = None


class ConsumerView(BaseModel):
    """A consumer of the gateway."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consumer_id": 7,
                    "name": "acme-trading",
                    "plan": "partner-basic",
                    "account_ids": ["ACC-2001"],
                    "oauth_client_id": "partner-acme",
                    "enabled": True,
                    "created_at": "2026-11-26T10:40:00Z",
                }
            ]
        }
    )

    consumer_id: int
    name: str
    plan: str | None
    account_ids: list[str]
    oauth_client_id: str | None
    enabled: bool
    created_at: UtcDateTime

    @classmethod
    def of(cls, consumer: Consumer) -> "ConsumerView":
        return cls(
            consumer_id=consumer.consumer_id,
            name=consumer.name,
            plan=consumer.plan.name if consumer.plan is not None else None,
            account_ids=list(consumer.account_ids or []),
            oauth_client_id=consumer.oauth_client_id,
            enabled=consumer.enabled,
            created_at=consumer.created_at,
        )


class ConsumerList(BaseModel):
    consumers: list[ConsumerView]


class KeyCreate(BaseModel):
    """A new API key for the consumer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "production", "expires_at": "2027-06-30T00:00:00Z"}]
        },
    )

    # No control characters: PostgreSQL stores no NUL, and a list shows them as they are.
    name: str = Field(
        "", max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$", description="What the key is for"
    )
    expires_at: Annotated[datetime | None, AfterValidator(_future)] = Field(
        None, description="When the key stops working; never when omitted"
    )


KeyStatus = Literal["active", "expired", "revoked"]


_KEY_EXAMPLE: dict[str, Any] = {
    "key_id": 12,
    "prefix": "3f9a1c2b7d4e",
    "name": "production",
    "status": "active",
    "created_at": "2026-11-26T10:40:00Z",
    "expires_at": "2027-06-30T00:00:00Z",
    "revoked_at": None,
}

_ISSUED_KEY_EXAMPLE = {
    **_KEY_EXAMPLE,
    "key": "sbk_3f9a1c2b7d4e_2yq3Jx0cA7u9b0Y1nQ6l3o5s8v2x4z6B8D0F2H4J6L8",
}


class KeyView(BaseModel):
    """An API key as listed: its public prefix and state, never the key or its hash."""

    model_config = ConfigDict(json_schema_extra={"examples": [_KEY_EXAMPLE]})

    key_id: int
    prefix: str
    name: str
    status: KeyStatus
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    revoked_at: UtcDateTime | None

    @classmethod
    def of(cls, key: ApiKey) -> "KeyView":
        expires_at = stored_utc(key.expires_at)
        key_status: KeyStatus = "active"
        if key.revoked_at is not None:
            key_status = "revoked"
        elif expires_at is not None and expires_at <= datetime.now(UTC):
            key_status = "expired"
        return cls(
            key_id=key.key_id,
            prefix=key.prefix,
            name=key.name,
            status=key_status,
            created_at=stored_utc(key.created_at),
            expires_at=expires_at,
            revoked_at=stored_utc(key.revoked_at),
        )


class IssuedKeyView(KeyView):
    """A newly created key. `key` is shown only in this response: store it now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_KEY_EXAMPLE,
                    "key": "sbk_3f9a1c2b7d4e_2yq3Jx0cA7u9b0Y1nQ6l3o5s8v2x4z6B8D0F2H4J6L8",
                }
            ]
        }
    )

    key: str = Field(description="The API key; it cannot be retrieved again")


class KeyList(BaseModel):
    keys: list[KeyView]


async def _consumer(repo: ConsumerRepository, consumer_id: int) -> Consumer:
    consumer = await repo.by_id(consumer_id)
    if consumer is None:
        raise NotFound(f"No consumer with id {consumer_id} exists.")
    return consumer


async def _refuse_linked_client(
    repo: ConsumerRepository, client_id: str, *, except_id: int | None = None
) -> None:
    """409 when another consumer already acts for this OAuth client."""
    existing = await repo.by_oauth_client_id(client_id)
    if existing is not None and existing.consumer_id != except_id:
        raise Conflict(
            f"OAuth client {client_id!r} is already linked to consumer {existing.name!r}.",
            extra={"field": "oauth_client_id", "consumer_id": existing.consumer_id},
        )


@router.get("", response_model=ConsumerList)
async def list_consumers(session: SessionDep) -> ConsumerList:
    """Every consumer."""
    consumers = await ConsumerRepository(session).all()
    return ConsumerList(consumers=[ConsumerView.of(c) for c in consumers])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsumerView,
    responses=problem_responses(409),
)
async def create_consumer(
    body: ConsumerCreate, session: SessionDep, notices: ChangeNoticesDep
) -> ConsumerView:
    """Create a consumer on a plan, linked to the accounts it may act on."""
    repo = ConsumerRepository(session)
    if await repo.by_name(body.name) is not None:
        raise Conflict(f"A consumer named {body.name!r} already exists.")
    if body.oauth_client_id is not None:
        await _refuse_linked_client(repo, body.oauth_client_id)
    plan = await plan_by_name(PlanRepository(session), body.plan) if body.plan else None
    consumer = Consumer(
        name=body.name,
        plan_id=plan.plan_id if plan is not None else None,
        account_ids=body.account_ids,
        oauth_client_id=body.oauth_client_id,
        enabled=body.enabled,
    )
    await repo.add(consumer)
    await stage_change(session, notices)
    return ConsumerView.of(consumer)


@router.get("/{consumer_id}", response_model=ConsumerView)
async def get_consumer(consumer_id: RowId, session: SessionDep) -> ConsumerView:
    """One consumer."""
    return ConsumerView.of(await _consumer(ConsumerRepository(session), consumer_id))


@router.patch("/{consumer_id}", response_model=ConsumerView, responses=problem_responses(409))
async def update_consumer(
    consumer_id: RowId, body: ConsumerUpdate, session: SessionDep, notices: ChangeNoticesDep
) -> ConsumerView:
    """Change a consumer's plan, accounts, OAuth client or enabled state; effective at once."""
    repo = ConsumerRepository(session)
    consumer = await _consumer(repo, consumer_id)
    changed = body.model_fields_set
    # Checked before any field changes, so a refused update leaves the consumer as it was.
    if "oauth_client_id" in changed and body.oauth_client_id is not None:
        await _refuse_linked_client(repo, body.oauth_client_id, except_id=consumer_id)
    if "plan" in changed:
        plan = await plan_by_name(PlanRepository(session), body.plan) if body.plan else None
        consumer.plan_id = plan.plan_id if plan is not None else None
    if body.account_ids is not None:
        consumer.account_ids = list(body.account_ids)
    if "oauth_client_id" in changed:
        consumer.oauth_client_id = body.oauth_client_id
    if body.enabled is not None:
        consumer.enabled = body.enabled
    await flush_change(session)
    await repo.save(consumer)
    await stage_change(session, notices)
    return ConsumerView.of(consumer)


@router.delete("/{consumer_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_consumer(
    consumer_id: RowId,
    session: SessionDep,
    notices: ChangeNoticesDep,
    redis: RedisDep,
    settings: SettingsDep,
    chain: PolicyChainDep,
) -> Response:
    """Delete a consumer and its keys; its keys stop working at once, and its quota and rate
    limit counts are deleted with it."""
    repo = ConsumerRepository(session)
    consumer = await _consumer(repo, consumer_id)
    prefixes = [k.prefix for k in await ApiKeyRepository(session).of_consumer(consumer_id)]
    rules = [(r.rule_id, r.key_by) for r in await RateLimitRuleRepository(session).all()]
    await repo.delete(consumer)
    await stage_change(session, notices)
    for prefix in prefixes:
        after_commit(session, partial(_announce, redis, settings, prefix))
    after_commit(session, partial(_forget_counts, chain, consumer_id, rules))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{consumer_id}/keys", response_model=KeyList)
async def list_consumer_keys(consumer_id: RowId, session: SessionDep) -> KeyList:
    """The consumer's keys by prefix and state; keys themselves cannot be shown again."""
    await _consumer(ConsumerRepository(session), consumer_id)
    keys = await ApiKeyRepository(session).of_consumer(consumer_id)
    return KeyList(keys=[KeyView.of(k) for k in keys])


@router.post(
    "/{consumer_id}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedKeyView,
    responses=problem_responses(409),
)
async def create_consumer_key(
    consumer_id: RowId,
    body: KeyCreate,
    session: SessionDep,
    notices: ChangeNoticesDep,
    settings: SettingsDep,
    response: Response,
) -> IssuedKeyView:
    """Issue an API key; the key is in this response only."""
    await _consumer(ConsumerRepository(session), consumer_id)
    issued = issue_key(key_hasher(settings))
    key = ApiKey(
        consumer_id=consumer_id,
        prefix=issued.prefix,
        key_hash=issued.key_hash,
        name=body.name,
        expires_at=body.expires_at,
    )
    await ApiKeyRepository(session).add(key)
    await stage_change(session, notices)
    # The body holds a credential: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return IssuedKeyView(**KeyView.of(key).model_dump(), key=issued.key)


@router.delete("/{consumer_id}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_consumer_key(
    consumer_id: RowId,
    key_id: RowId,
    session: SessionDep,
    notices: ChangeNoticesDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> Response:
    """Revoke an API key; every gateway process refuses it from the next request on."""
    repo = ApiKeyRepository(session)
    key = await repo.by_id(consumer_id, key_id)
    if key is None:
        raise NotFound(f"Consumer {consumer_id} has no key with id {key_id}.")
    await repo.revoke(key, at=datetime.now(UTC))
    await stage_change(session, notices)
    after_commit(session, partial(_announce, redis, settings, key.prefix))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _announce(redis: RedisDep, settings: SettingsDep, prefix: str) -> None:
    try:
        await announce_revocation(redis, settings, prefix)
    except RedisUnavailable as exc:
        # Committed and live in this process; peers follow on the change notice.
        logger.warning("could not mark key %s revoked in Redis: %s", prefix, exc)


async def _forget_counts(
    chain: PolicyChain, consumer_id: int, rules: list[tuple[int, str]]
) -> None:
    forgets = [
        partial(chain.admission.forget_consumer, consumer_id, rules=rules),
        partial(chain.quotas.forget, consumer_id),
    ]
    for forget in forgets:
        try:
            await forget()
        except RedisUnavailable as exc:
            # Its id is never handed out again: counts left in Redis only wait for their expiry.
            logger.warning("could not delete the counts of consumer %s: %s", consumer_id, exc)

"""Idempotency of order entry: one `Idempotency-Key` places at most one order.

A key is scoped to the caller and the account. The first request claims it (an "in
progress" record with a lease), does the work and stores its outcome (status and body) for
`idempotency_ttl_s`; a repeat with the same body gets that outcome replayed, a repeat with a
different body gets 422. A duplicate that arrives while the first is still running waits for
its outcome, up to `idempotency_wait_s`, then answers 409.

When the first attempt fails without a definite answer (upstream 5xx, timeout, unreachable,
cancelled), the claim is released so the client can retry. The key is also forwarded to the
orders service, which deduplicates on it as well: a retry after an ambiguous failure (the
order may have been placed before the timeout) cannot place a second order.

With Redis, records are shared by every gateway process (`SET NX PX` claims, owner-checked
completion and release in Lua, one key each); without Redis they live in this process. When
Redis cannot answer, no order is sent (503 with `Retry-After`): the gateway could not tell a
duplicate from a first request.
"""

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from app.errors import Conflict, InvalidRequest, ServiceUnavailable
from app.observability.metrics import idempotent_replays
from app.settings import AccessSettings
from app.shared.redis import RedisClient, RedisUnavailable, SharedRedis

logger = logging.getLogger("gateway.idempotency")

_REUSED_KEY = {"field": "header.Idempotency-Key", "message": "already used with another body"}
_POLL_FIRST_S = 0.02
_POLL_LAST_S = 0.2

# Store the outcome only while this process still owns the claim.
_COMPLETE = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['owner'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['owner'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The first answer given for a key: replayed as it was to every repeat."""

    status: int
    body: dict[str, Any]


def fingerprint(body: Any) -> str:
    """SHA-256 of the canonical JSON of a request body."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class RecordStore(Protocol):
    """Where claims and outcomes live; records are JSON objects with `owner` and `state`."""

    async def claim(self, key: str, record: dict[str, Any], *, lease_s: float) -> bool: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def complete(
        self, key: str, *, owner: str, record: dict[str, Any], ttl_s: float
    ) -> None: ...
    async def release(self, key: str, *, owner: str) -> None: ...
    async def changed(self, key: str, *, timeout_s: float) -> None: ...


class RedisRecords:
    """Records shared by every gateway process. Without Redis no order is sent: the gateway
    could not tell a duplicate from a first request."""

    def __init__(self, redis: SharedRedis) -> None:
        self._redis = redis
        self._complete = redis.client.register_script(_COMPLETE)
        self._release = redis.client.register_script(_RELEASE)

    async def claim(self, key: str, record: dict[str, Any], *, lease_s: float) -> bool:
        async with _redis_needed(self._redis) as client:
            claimed = await client.set(key, orjson.dumps(record), nx=True, px=_ms(lease_s))
        return bool(claimed)

    async def get(self, key: str) -> dict[str, Any] | None:
        async with _redis_needed(self._redis) as client:
            raw = await client.get(key)
        return orjson.loads(raw) if raw is not None else None

    async def complete(self, key: str, *, owner: str, record: dict[str, Any], ttl_s: float) -> None:
        async with _redis_needed(self._redis):
            await self._complete(keys=[key], args=[owner, orjson.dumps(record), _ms(ttl_s)])

    async def release(self, key: str, *, owner: str) -> None:
        async with _redis_needed(self._redis):
            await self._release(keys=[key], args=[owner])

    async def changed(self, key: str, *, timeout_s: float) -> None:
        # Polling: the wait is short and bounded, and a pub/sub per key would cost more.
        await asyncio.sleep(timeout_s)


class MemoryRecords:
    """Records in this process; waiters are woken when a record changes."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[dict[str, Any], float]] = {}
        self._events: dict[str, asyncio.Event] = {}

    def _live(self, key: str) -> dict[str, Any] | None:
        entry = self._records.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._records[key]
            return None
        return entry[0]

    def _notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._records.items() if expires <= now]:
            del self._records[key]

    async def claim(self, key: str, record: dict[str, Any], *, lease_s: float) -> bool:
        if len(self._records) % 256 == 0:
            self._forget_expired()
        if self._live(key) is not None:
            return False
        self._records[key] = (record, time.monotonic() + lease_s)
        return True

    async def get(self, key: str) -> dict[str, Any] | None:
        return self._live(key)

    async def complete(self, key: str, *, owner: str, record: dict[str, Any], ttl_s: float) -> None:
        current = self._live(key)
        if current is None or current.get("owner") == owner:
            self._records[key] = (record, time.monotonic() + ttl_s)
        self._notify(key)

    async def release(self, key: str, *, owner: str) -> None:
        current = self._live(key)
        if current is not None and current.get("owner") == owner:
            del self._records[key]
        self._notify(key)

    async def changed(self, key: str, *, timeout_s: float) -> None:
        event = self._events.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


def _records_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Orders cannot be accepted right now (idempotency store unavailable); "
        "retry shortly with the same Idempotency-Key.",
        headers={"Retry-After": "1"},
    )


@contextlib.asynccontextmanager
async def _redis_needed(redis: SharedRedis) -> AsyncIterator[RedisClient]:
    """Fail closed: while Redis is known to be down, at once; otherwise within its timeout."""
    try:
        async with redis.answering() as client:
            yield client
    except RedisUnavailable as exc:
        logger.warning("idempotency records unavailable: %s", exc)
        raise _records_unavailable() from None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class IdempotencyLedger:
    """The process's idempotency records (Redis-backed when configured)."""

    def __init__(self, redis: SharedRedis | None, *, prefix: str, settings: AccessSettings) -> None:
        self._records: RecordStore = RedisRecords(redis) if redis is not None else MemoryRecords()
        self._prefix = f"{prefix}idem:"
        self._settings = settings

    def _key(self, scope: str, idempotency_key: str) -> str:
        # Hashed: the record's name carries neither the caller nor the client's key.
        digest = hashlib.sha256(f"{scope}\x00{idempotency_key}".encode()).hexdigest()
        return self._prefix + digest

    async def run(
        self,
        *,
        scope: str,
        idempotency_key: str,
        request_fingerprint: str,
        attempt: Callable[[], Awaitable[Outcome]],
    ) -> tuple[Outcome, bool]:
        """The outcome for this key, and whether it is a replay of an earlier request.

        `attempt` returns the outcome to store, or raises when there is no definite answer,
        which releases the key for a retry.
        """
        key = self._key(scope, idempotency_key)
        owner = secrets.token_hex(8)
        claim = {"state": "pending", "owner": owner, "fingerprint": request_fingerprint}
        deadline = time.monotonic() + self._settings.idempotency_wait_s
        poll = _POLL_FIRST_S
        while True:
            if await self._records.claim(key, claim, lease_s=self._settings.idempotency_lease_s):
                return await self._attempt(key, owner, request_fingerprint, attempt), False
            record = await self._records.get(key)
            if record is None:
                continue  # released or expired in between: try to claim it again
            if record.get("fingerprint") != request_fingerprint:
                raise InvalidRequest(
                    "This Idempotency-Key was already used with a different request body; "
                    "use a new key for a different order.",
                    extra={"errors": [_REUSED_KEY]},
                )
            if record.get("state") == "done":
                idempotent_replays.inc()
                return Outcome(status=record["status"], body=record["body"]), True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Conflict(
                    "A request with this Idempotency-Key is in progress; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            await self._records.changed(key, timeout_s=min(poll, remaining))
            poll = min(poll * 2, _POLL_LAST_S)

    async def _attempt(
        self,
        key: str,
        owner: str,
        request_fingerprint: str,
        attempt: Callable[[], Awaitable[Outcome]],
    ) -> Outcome:
        try:
            outcome = await attempt()
        except BaseException:
            # No definite answer: free the key so a retry can proceed (the orders service
            # still deduplicates on it if the order was in fact placed). When even that
            # fails, the claim's lease runs out instead.
            with contextlib.suppress(ServiceUnavailable):
                await asyncio.shield(self._records.release(key, owner=owner))
            raise
        done = {
            "state": "done",
            "owner": owner,
            "fingerprint": request_fingerprint,
            "status": outcome.status,
            "body": outcome.body,
        }
        try:
            await self._records.complete(
                key, owner=owner, record=done, ttl_s=self._settings.idempotency_ttl_s
            )
        except ServiceUnavailable:
            # The order stands; a repeat waits out the lease, then the orders service replays.
            logger.warning("the outcome of an order could not be recorded for replay")
        return outcome


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    """The ledger as seen by one caller: keys of different callers never meet."""

    ledger: IdempotencyLedger
    caller: str

"""Change notices: after a committed change, every gateway process reloads its snapshot.

The process that made the change reloads at once; with Redis configured it also publishes on
`{redis_prefix}config-changed` (sharded pub/sub, `SPUBLISH`/`SSUBSCRIBE`, on a Redis
Cluster), and each process's listener reloads on notices that other processes sent. Every
`config_refresh_s` each process also reloads on its own: the fallback for a notice that was
lost, and the only way processes sharing a database but no Redis learn of each other's
changes. Every `REVISION_CHECK_S` each process also compares the store's revision (one row,
raised by every committed change) with its snapshot's and reloads when they differ: a
process that missed notices catches up by version within that, with or without Redis. A
reload that finds nothing changed keeps the snapshot (and its version). A process
serving the snapshot file because its database was unavailable at start-up tries every
`_STALE_RETRY_S` until the database answers.
"""

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import orjson
from redis.asyncio.client import PubSub
from sqlalchemy.exc import SQLAlchemyError

from app.shared.redis import REDIS_ERRORS, RedisUnavailable, SharedRedis, receive
from app.shared.tasks import stop_tasks
from app.store.database import is_unavailable
from app.store.snapshot import ConfigSnapshot, ConfigStore

logger = logging.getLogger("gateway.config")

_FIRST_RETRY_S = 0.1
_LAST_RETRY_S = 5.0
# Start-up waits this long for the subscription, so a change right after start is not missed,
# but a Redis outage does not hold the process back.
_SUBSCRIBE_WAIT_S = 2.0
_LISTEN_WAIT_S = 5.0
# How often each process compares its snapshot's revision with the store's; the bound of the
# revision query.
REVISION_CHECK_S = 0.5
_REVISION_QUERY_S = 2.0
# How often a process serving a stale snapshot from disk asks the database again.
_STALE_RETRY_S = 1.0


class ChangeNotices:
    """Publishes config changes and reloads on changes other processes published."""

    def __init__(
        self,
        config: ConfigStore,
        redis: SharedRedis | None,
        *,
        prefix: str,
        refresh_s: float,
        revision_check_s: float = REVISION_CHECK_S,
    ) -> None:
        self._config = config
        self._redis = redis
        self._refresh_s = refresh_s
        self._revision_check_s = revision_check_s
        self._watcher: asyncio.Task[None] | None = None
        self.channel = f"{prefix}config-changed"
        # Lets the listener skip this process's own notices: it has reloaded already.
        self.origin = uuid.uuid4().hex
        self._listener: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the periodic reload and, with Redis, subscribe to other processes' notices."""
        if (self._refresh_s > 0 or self._config.stale) and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh(), name="config-refresh")
        if self._revision_check_s > 0 and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_revision(), name="config-revision")
        if self._redis is None or self._listener is not None:
            return
        attempted = asyncio.Event()
        self._listener = asyncio.create_task(
            self._listen(self._redis, attempted), name="config-change-listener"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(attempted.wait(), _SUBSCRIBE_WAIT_S)

    async def stop(self) -> None:
        await stop_tasks(self._listener, self._refresher, self._watcher)
        self._listener = self._refresher = self._watcher = None

    async def changed(self) -> ConfigSnapshot:
        """The store has a committed change: reload here, then tell the other processes."""
        try:
            snapshot = await self._config.reload()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # The change is committed: answering an error would invite a retry that finds it
            # done. This process catches up on its next reload, as the others do.
            logger.warning("config reload after a committed change failed: %s", exc)
            snapshot = self._config.current
        if self._redis is not None:
            notice = orjson.dumps(
                {"origin": self.origin, "version": snapshot.version, "revision": snapshot.revision}
            )
            try:
                await self._redis.publish(self.channel, notice)
            except RedisUnavailable as exc:
                # The change is committed and live here; the others catch up when their
                # listener resubscribes (it reloads then) or on the next notice.
                logger.warning("could not publish config change notice: %s", exc)
        return snapshot

    async def _listen(self, redis: SharedRedis, attempted: asyncio.Event) -> None:
        delay = _FIRST_RETRY_S
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = await redis.subscribe(self.channel)
                # Notices sent before we (re)subscribed are lost: at start-up, those since
                # the lifespan's first load; after an outage, all of them. Catch up once.
                await self._reload("subscription")
                attempted.set()
                delay = _FIRST_RETRY_S
                while True:
                    # Waits with its own timeout, not the client's short command timeout.
                    message = await receive(pubsub, timeout_s=_LISTEN_WAIT_S)
                    if message is not None:
                        await self._on_message(message)
            except REDIS_ERRORS as exc:
                logger.warning("config change listener lost Redis, retrying: %s", exc)
            finally:
                attempted.set()
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LAST_RETRY_S)

    async def _refresh(self) -> None:
        while True:
            if self._config.stale:
                await asyncio.sleep(min(self._refresh_s or _STALE_RETRY_S, _STALE_RETRY_S))
                await self._reload("retry of the database")
            elif self._refresh_s > 0:
                await asyncio.sleep(self._refresh_s)
                await self._reload("periodic refresh")
            else:
                return

    async def _watch_revision(self) -> None:
        """Catch up by version: every `revision_check_s`, one small query for the store's
        revision; a snapshot read at an older one (a notice missed, Redis down or absent)
        is reloaded."""
        while True:
            await asyncio.sleep(self._revision_check_s)
            try:
                async with asyncio.timeout(_REVISION_QUERY_S):
                    stored = await self._config.stored_revision()
            except Exception as exc:
                if not (isinstance(exc, SQLAlchemyError | TimeoutError) or is_unavailable(exc)):
                    logger.exception("config revision check failed")
                continue
            if stored != self._config.current.revision:
                await self._reload(f"revision {stored} (serving {self._config.current.revision})")

    async def _on_message(self, message: dict[str, Any]) -> None:
        try:
            notice = orjson.loads(message["data"])
            origin = notice.get("origin")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            logger.warning("ignoring a malformed config change notice")
            return
        if origin == self.origin:
            return
        await self._reload("change notice")

    async def _reload(self, reason: str) -> None:
        before = self._config.current.version
        try:
            snapshot = await self._config.reload()
        except Exception as exc:
            if isinstance(exc, SQLAlchemyError) or is_unavailable(exc):
                logger.warning("config reload on %s failed: %s", reason, exc)
            else:
                # Keeps the listener and the refresher alive; the next reload tries again.
                logger.exception("config reload on %s failed", reason)
            return
        if snapshot.version != before:
            logger.info("config reloaded on %s: version %d", reason, snapshot.version)

"""Exact rate limits with GCRA (generic cell rate algorithm), shared through Redis.

A limit of `limit` requests per `period_s` seconds admits one request every
`interval = period_s / limit` and lets a caller run ahead of that pace by up to `burst`
requests. The only state per key is the theoretical arrival time (TAT) of the next request.

With Redis, each key is checked by one atomic Lua script that reads Redis's own clock, so
every gateway process sees one clock and one count; the script touches exactly one key so a
Redis Cluster can hold it, and several limits of one request go out pipelined, in one round
trip. Without Redis (or while it is unreachable and the settings say fail open) the same
arithmetic runs in process.

A request counts against its limits only when all of them admit it: in process the counts
are written after every limit agreed; in Redis each limit counts as it admits, and when
another refused, what the admitting ones counted is given back right after (one more
script per key, not waited for).
"""

import asyncio
import logging
import math
import ssl
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("gateway.ratelimit")

_US = 1_000_000

# KEYS[1]: the limit's TAT key. ARGV: interval (us), burst capacity (us).
# Returns {admitted, tat - now (us), retry after (us)}. Numbers are written with %.0f
# because Lua's default number formatting would round microsecond timestamps.
GCRA_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - capacity
if now < allow_at then
  return {0, string.format('%.0f', tat - now), string.format('%.0f', allow_at - now)}
end
local ttl_ms = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)
return {1, string.format('%.0f', next_tat - now), '0'}
"""


# KEYS[1]: a limit's TAT key. ARGV: interval (us). Gives back one request the GCRA script
# counted: used when another limit of the same request refused it.
GCRA_REFUND_SCRIPT = """
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local refunded = tat - tonumber(ARGV[1])
if refunded <= now then
  redis.call('DEL', KEYS[1])
else
  local ttl_ms = math.ceil((refunded - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%.0f', refunded), 'PX', ttl_ms)
end
return 1
"""


def _sf_string(text: str) -> str:
    """`text` as an RFC 8941 string: printable ASCII, with `\\` and `"` escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


# KEYS[1]: a consumer's in-flight set. ARGV: its cap, the lease (ms), the request's token.
# Members are scored with the end of their lease, so a crashed process's requests stop
# counting when their leases run out. Returns 1 when the request holds a slot, else 0.
IN_FLIGHT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """A request's claim on one of its consumer's in-flight slots, shared by all processes."""

    key: str
    limit: int
    lease_ms: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` requests per `period_s` seconds, bursting up to `burst` at once."""

    name: str
    limit: int
    period_s: float
    burst: int
    interval_us: int = field(init=False)
    capacity_us: int = field(init=False)
    # The name as a structured-field string, and the limit's item in `RateLimit-Policy`,
    # e.g. `"consumer-minute";q=600;w=60`.
    quoted_name: str = field(init=False)
    policy_item: str = field(init=False)

    def __post_init__(self) -> None:
        interval = max(1, round(self.period_s * _US / self.limit))
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "capacity_us", interval * self.burst)
        quoted = _sf_string(self.name)
        object.__setattr__(self, "quoted_name", quoted)
        # The draft's window is whole seconds.
        window = max(1, round(self.period_s))
        object.__setattr__(self, "policy_item", f"{quoted};q={self.limit};w={window}")

    @classmethod
    def of(cls, name: str, *, limit: int, period_s: float, burst: int | None = None) -> "RateLimit":
        return cls(name=name, limit=limit, period_s=period_s, burst=burst or limit)


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """One limit's verdict on one request."""

    limit: RateLimit
    admitted: bool
    remaining: int
    # Seconds until the limit's full burst is available again.
    reset_s: int
    # Seconds until a refused request would be admitted; 0 when admitted.
    retry_after_s: int

    @property
    def header_item(self) -> str:
        """The outcome's item in the `RateLimit` header."""
        return f"{self.limit.quoted_name};r={self.remaining};t={self.reset_s}"


def _outcome(limit: RateLimit, *, admitted: bool, ahead_us: int, retry_us: int) -> LimitOutcome:
    """Turn GCRA state (how far the TAT is ahead of now) into counts for headers."""
    if admitted:
        remaining = max(0, (limit.capacity_us - ahead_us) // limit.interval_us)
        retry_after = 0
    else:
        remaining = 0
        retry_after = max(1, math.ceil(retry_us / _US))
    return LimitOutcome(
        limit=limit,
        admitted=admitted,
        remaining=remaining,
        reset_s=math.ceil(ahead_us / _US),
        retry_after_s=retry_after,
    )


# One check: the (unprefixed) key the limit counts under, and the limit.
LimitCheck = tuple[str, RateLimit]


class LocalGcra:
    """GCRA in this process's memory: the embedded default and the fail-open fallback."""

    # Forgotten keys are swept every this many checks, so memory follows active callers.
    _SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._tats: dict[str, int] = {}
        self._checks = 0

    def check(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        """Every limit's outcome; a request is counted only when every limit admits it."""
        now = time.monotonic_ns() // 1000
        self._checks += 1
        if self._checks % self._SWEEP_EVERY == 0:
            self._sweep(now)
        outcomes = []
        counted: dict[str, int] = {}
        for key, limit in checks:
            tat = max(self._tats.get(key, now), now)
            next_tat = tat + limit.interval_us
            allow_at = next_tat - limit.capacity_us
            if now < allow_at:
                outcomes.append(
                    _outcome(limit, admitted=False, ahead_us=tat - now, retry_us=allow_at - now)
                )
                continue
            counted[key] = next_tat
            outcomes.append(_outcome(limit, admitted=True, ahead_us=next_tat - now, retry_us=0))
        if len(counted) == len(checks):
            self._tats.update(counted)
        return outcomes

    def _sweep(self, now: int) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}


RespReply = int | bytes | None | list["RespReply"] | RedisError


def _bulk_strings(*parts: str | int) -> bytes:
    out = []
    for part in parts:
        data = part.encode() if isinstance(part, str) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def encode_command(*parts: str | int) -> bytes:
    return b"*%d\r\n" % len(parts) + _bulk_strings(*parts)


class _Incomplete(Exception):
    pass


def _parse(buffer: bytearray, pos: int) -> tuple[RespReply, int]:
    """One RESP2 reply from `buffer` at `pos`, and where the next one starts."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = buffer[pos], bytes(buffer[pos + 1 : end]), end + 2
    if kind == 0x3A:  # ":" integer
        return int(line), pos
    if kind == 0x24:  # "$" bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buffer) < pos + size + 2:
            raise _Incomplete
        return bytes(buffer[pos : pos + size]), pos + size + 2
    if kind == 0x2A:  # "*" array
        items: list[RespReply] = []
        for _ in range(int(line)):
            item, pos = _parse(buffer, pos)
            items.append(item)
        return items, pos
    if kind == 0x2B:  # "+" simple string
        return line, pos
    if kind == 0x2D:  # "-" error
        message = line.decode(errors="replace")
        if message.startswith("NOSCRIPT"):
            return NoScriptError(message), pos
        return ResponseError(message), pos
    raise RedisConnectionError(f"unexpected reply from Redis: {bytes(buffer[pos:end])!r}")


class _Call:
    """Commands written together, and their replies as they arrive."""

    __slots__ = ("deadline", "expected", "replies", "waiter")

    def __init__(self, waiter: asyncio.Future[list[RespReply]], expected: int, deadline: float):
        self.waiter = waiter
        self.expected = expected
        self.deadline = deadline
        self.replies: list[RespReply] = []


class _RespProtocol(asyncio.Protocol):
    """Writes commands as they come and hands replies, in order, to whoever waits for them.

    Commands sent within one turn of the event loop go out in one write. One timer watches
    the oldest unanswered call: past its deadline the connection is given up, since every
    later reply would otherwise go to the wrong caller.
    """

    def __init__(self, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._calls: deque[_Call] = deque()
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        pos = 0
        try:
            while self._calls:
                reply, pos = _parse(self._buffer, pos)
                call = self._calls[0]
                call.replies.append(reply)
                if len(call.replies) == call.expected:
                    self._calls.popleft()
                    # A caller that gave up (client gone) still owned its place in the order.
                    if not call.waiter.done():
                        call.waiter.set_result(call.replies)
        except _Incomplete:
            pass
        except RedisError as exc:
            self._fail(exc)
            return
        del self._buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def send(self, data: bytes, expected: int) -> asyncio.Future[list[RespReply]]:
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection to Redis is closed")
        waiter: asyncio.Future[list[RespReply]] = self._loop.create_future()
        call = _Call(waiter, expected, self._loop.time() + self._timeout_s)
        self._calls.append(call)
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(data)
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(call.deadline, self._check_deadline)
        return waiter

    def _flush(self) -> None:
        if self._outgoing and not self.closed and self._transport is not None:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._calls:
            return
        oldest = self._calls[0].deadline
        if self._loop.time() >= oldest:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self._timeout_s} s"))
        else:
            self._watchdog = self._loop.call_at(oldest, self._check_deadline)

    def abort(self) -> None:
        self._fail(RedisConnectionError("connection to Redis closed by the gateway"))

    def _fail(self, exc: RedisError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._outgoing.clear()
        while self._calls:
            call = self._calls.popleft()
            if not call.waiter.done():
                call.waiter.set_exception(exc)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()


def _ignore_outcome(waiter: "asyncio.Future[list[RespReply]]") -> None:
    if not waiter.cancelled():
        waiter.exception()


class RedisLink:
    """One pipelined connection to Redis, shared by all of a process's requests.

    Concurrent requests write their commands onto the same connection without waiting for
    each other, and replies come back in order, so a burst costs a few writes and no
    connection per request. redis-py's pooled client costs several times more CPU per call
    (measured on this project's 2-core machine: ~3,700 EVALSHA/s through redis-py against
    ~22,000 through a pipelined connection), which the limiter, called on every request,
    cannot afford.

    A call not answered within `timeout_s` gives the connection up (every later reply would
    go to the wrong caller); the next call connects again.

    It talks to one Redis server (or a proxy in front of a cluster). The scripts are
    cluster-safe, one key each, but this link does not follow MOVED redirections: against a
    Redis Cluster directly they would count as failures.
    """

    def __init__(self, url: str, *, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss"}:
            raise ValueError(f"the rate limiter needs a redis:// or rediss:// URL, not {url!r}")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._tls = parts.scheme == "rediss"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        database = parts.path.lstrip("/")
        self._database = int(database) if database else 0
        self._timeout_s = timeout_s
        self._protocol: _RespProtocol | None = None
        self._connecting = asyncio.Lock()

    async def call(self, *commands: Sequence[str | int]) -> list[RespReply]:
        """Send the commands together; their replies, errors included, in order."""
        return await self.send(
            b"".join(encode_command(*command) for command in commands), len(commands)
        )

    async def send(self, data: bytes, expected: int) -> list[RespReply]:
        """Send encoded commands; the `expected` replies, in order."""
        protocol = await self._connected()
        return await protocol.send(data, expected)

    def send_soon(self, data: bytes, expected: int) -> "asyncio.Future[list[RespReply]]":
        """Like `send`, but the commands are queued at once when connected, so that a caller
        can queue more (e.g. the rate limits) and have them all go out in one write."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            pending = protocol.send(data, expected)
        else:
            pending = asyncio.ensure_future(self.send(data, expected))
        # Whoever awaits it sees its error; nobody else should be told it was never seen.
        pending.add_done_callback(_ignore_outcome)
        return pending

    def send_nowait(self, data: bytes, expected: int) -> None:
        """Send without waiting for the replies; dropped when not connected."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return
        protocol.send(data, expected).add_done_callback(_ignore_outcome)

    async def _connected(self) -> _RespProtocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            protocol = await self._connect()
            self._protocol = protocol
            return protocol

    async def _connect(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _RespProtocol(self._timeout_s),
                    self._host,
                    self._port,
                    ssl=ssl.create_default_context() if self._tls else None,
                )
        except TimeoutError:
            raise RedisTimeoutError(f"connecting to Redis took over {self._timeout_s} s") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        setup: list[bytes] = []
        if self._password is not None:
            credentials = [self._username, self._password] if self._username else [self._password]
            setup.append(encode_command("AUTH", *credentials))
        if self._database:
            setup.append(encode_command("SELECT", self._database))
        if setup:
            try:
                for reply in await protocol.send(b"".join(setup), len(setup)):
                    if isinstance(reply, RedisError):
                        raise reply
            except BaseException:
                protocol.abort()
                raise
        return protocol

    async def close(self) -> None:
        if self._protocol is not None:
            self._protocol.abort()
            self._protocol = None


class RedisGcra:
    """GCRA in Redis: one EVALSHA per limit key, all of a request's limits (and its in-flight
    slot claim) in one write."""

    def __init__(self, link: RedisLink, *, prefix: str) -> None:
        self._link = link
        self._prefix = prefix + "rl:"
        self._in_flight_prefix = prefix + "if:"
        self._loaded = False
        self._gcra_head = b""
        self._refund_head = b""
        self._claim_head = b""
        # The encoded arguments of each limit, so a request only encodes its keys.
        self._arguments: dict[RateLimit, bytes] = {}

    async def check(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        outcomes, _ = await self.admit(checks, None)
        return outcomes

    async def admit(
        self, checks: Sequence[LimitCheck], claim: SlotClaim | None
    ) -> tuple[list[LimitOutcome], bool | None]:
        """The limits' outcomes, and whether the claimed slot was granted (None: no claim)."""
        if not self._loaded:
            await self._load()
        replies = await self._send(checks, claim)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis restarted or its script cache was flushed.
            await self._load()
            replies = await self._send(checks, claim)
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        outcomes = []
        for (_, limit), reply in zip(checks, replies, strict=False):
            if not isinstance(reply, list) or len(reply) != 3:
                raise ResponseError(f"unexpected reply from the rate limit script: {reply!r}")
            admitted, ahead, retry = reply
            outcomes.append(
                _outcome(
                    limit,
                    admitted=admitted == 1,
                    ahead_us=int(ahead),  # type: ignore[arg-type]
                    retry_us=int(retry),  # type: ignore[arg-type]
                )
            )
        if not all(outcome.admitted for outcome in outcomes):
            self._refund([check for check, o in zip(checks, outcomes, strict=True) if o.admitted])
        granted = replies[-1] == 1 if claim is not None else None
        return outcomes, granted

    def _refund(self, checks: Sequence[LimitCheck]) -> None:
        """Give back what the limits that admitted a refused request counted, without
        waiting: until it lands a caller may be refused early, never admitted beyond a limit."""
        parts = []
        for key, limit in checks:
            full_key = (self._prefix + key).encode()
            interval = str(limit.interval_us).encode()
            parts.append(self._refund_head)
            parts.append(
                b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(full_key), full_key, len(interval), interval)
            )
        if parts:
            self._link.send_nowait(b"".join(parts), len(checks))

    def release(self, claim: SlotClaim) -> None:
        """Give the slot back without waiting; a lost release ends with the lease."""
        self._link.send_nowait(
            encode_command("ZREM", self._in_flight_prefix + claim.key, claim.token), 1
        )

    async def _load(self) -> None:
        gcra, refund, in_flight = await self._link.call(
            ["SCRIPT", "LOAD", GCRA_SCRIPT],
            ["SCRIPT", "LOAD", GCRA_REFUND_SCRIPT],
            ["SCRIPT", "LOAD", IN_FLIGHT_SCRIPT],
        )
        for reply in (gcra, refund, in_flight):
            if isinstance(reply, RedisError):
                raise reply
        assert isinstance(gcra, bytes) and isinstance(refund, bytes)
        assert isinstance(in_flight, bytes)
        self._gcra_head = b"*6\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (len(gcra), gcra)
        self._refund_head = b"*5\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (
            len(refund),
            refund,
        )
        self._claim_head = b"*7\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (
            len(in_flight),
            in_flight,
        )
        self._loaded = True

    def _encoded_arguments(self, limit: RateLimit) -> bytes:
        encoded = self._arguments.get(limit)
        if encoded is None:
            if len(self._arguments) > 10_000:
                self._arguments.clear()
            interval, capacity = str(limit.interval_us).encode(), str(limit.capacity_us).encode()
            encoded = b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(interval),
                interval,
                len(capacity),
                capacity,
            )
            self._arguments[limit] = encoded
        return encoded

    async def _send(self, checks: Sequence[LimitCheck], claim: SlotClaim | None) -> list[RespReply]:
        parts = []
        for key, limit in checks:
            full_key = (self._prefix + key).encode()
            parts.append(self._gcra_head)
            parts.append(b"$%d\r\n%s\r\n" % (len(full_key), full_key))
            parts.append(self._encoded_arguments(limit))
        if claim is not None:
            parts.append(self._claim_head)
            parts.append(
                _bulk_strings(
                    self._in_flight_prefix + claim.key, claim.limit, claim.lease_ms, claim.token
                )
            )
        return await self._link.send(b"".join(parts), len(checks) + (claim is not None))


class RateLimiterUnavailable(Exception):
    """Redis is unreachable and the settings say to refuse rather than guess."""


RedisFailure = Literal["open", "closed"]


class RateLimiter:
    """Checks a request's limits in Redis when configured, otherwise in process.

    When Redis fails, the limiter stops asking it for `retry_s` (so an outage costs one
    timeout, not one per request), then lets a single request probe it again. Meanwhile
    `redis_failure="open"` limits in process and `"closed"` refuses.
    """

    def __init__(
        self,
        link: RedisLink | None,
        *,
        prefix: str,
        failure: RedisFailure,
        retry_s: float,
    ) -> None:
        self._link = link
        self._shared = RedisGcra(link, prefix=prefix) if link is not None else None
        self.local = LocalGcra()
        self._failure = failure
        self._retry_s = retry_s
        self._down_until = 0.0
        self._probing = False

    @classmethod
    def connect(
        cls,
        redis_url: str | None,
        *,
        prefix: str,
        failure: RedisFailure,
        timeout_s: float,
        retry_s: float,
    ) -> "RateLimiter":
        """A limiter with its own Redis connection and short timeouts, so that an outage
        costs a request at most `timeout_s` and the fallback decides the rest."""
        link = RedisLink(redis_url, timeout_s=timeout_s) if redis_url else None
        return cls(link, prefix=prefix, failure=failure, retry_s=retry_s)

    @property
    def link(self) -> RedisLink | None:
        """The pipelined Redis connection, for other per-request checks to share."""
        return self._link

    @property
    def shared(self) -> bool:
        """Whether limits and in-flight slots are counted in Redis (when it answers)."""
        return self._shared is not None

    async def check(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        outcomes, _ = await self.admit(checks, None)
        return outcomes

    async def admit(
        self, checks: Sequence[LimitCheck], claim: SlotClaim | None = None
    ) -> tuple[list[LimitOutcome], bool | None]:
        """The limits' outcomes, and whether Redis granted the claimed in-flight slot; None
        when Redis did not decide it (no claim, no Redis, or Redis down and failing open)."""
        if self._shared is None:
            return self.local.check(checks), None
        probe = False
        if self._down_until:
            if self._probing or time.monotonic() < self._down_until:
                return self._without_redis(checks), None
            self._probing = probe = True
        try:
            result = await self._shared.admit(checks, claim)
        except (RedisError, OSError) as exc:
            if not self._down_until:
                logger.warning(
                    "Redis unreachable for rate limiting (%s); failing %s until it answers",
                    exc,
                    self._failure,
                )
            self._down_until = time.monotonic() + self._retry_s
            return self._without_redis(checks), None
        finally:
            if probe:
                self._probing = False
        if self._down_until:
            logger.warning("Redis answers again; rate limits are shared again")
            self._down_until = 0.0
        return result

    def release(self, claim: SlotClaim) -> None:
        if self._shared is not None:
            self._shared.release(claim)

    def _without_redis(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        if self._failure == "closed":
            raise RateLimiterUnavailable
        return self.local.check(checks)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()

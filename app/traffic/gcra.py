"""Exact rate limits with GCRA (generic cell rate algorithm), in Redis or in process memory.

A limit of `limit` requests per `period_s` seconds admits one request every
`interval = period_s / limit` and lets a caller run ahead of that pace by up to `burst`
requests. The only state per key is the theoretical arrival time (TAT) of the next request.

In Redis one atomic Lua script, reading Redis's own clock (so every gateway process sees one
clock and one count), admits a request: all its limits, its in-flight slot claim and a set
membership question (a revoked API key), one command per request, batched with those of
concurrent requests into one round trip. On a Redis Cluster the keys of a request live on
several nodes, so there the script is called once per key, in the same pipeline.

A request counts against its limits only when all of them admit it: in process and in the
one script the counts are written after every limit agreed; on a cluster each limit counts
as it admits, and when another refused, what the admitting ones counted is given back before
the refusal is answered (one more script per key).
"""

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from app.shared.redis import Command, SharedRedis, delete_keys

_US = 1_000_000

# One request's admission, atomic, in one script: every limit's GCRA check, counted only
# when all of them admit it; the consumer's in-flight slot, claimed only then; and whether a
# member is in a set (a revoked API key). KEYS: the limits' TAT keys (ARGV[1] of them), then
# the in-flight set when ARGV[2] is '1', then the set asked about when ARGV[3] is not ''.
# ARGV: the count of limits, the claim flag, the member asked about, each limit's interval
# and burst capacity (us), then the claim's cap, lease (ms) and token.
# Returns {member (-1: not asked), granted (-1: no claim), then per limit: admitted, tat -
# now (us), retry after (us)}. In-flight members are scored with the end of their lease, so
# a crashed process's requests stop counting when their leases run out. Numbers are written
# with %.0f because Lua's default number formatting would round microsecond timestamps.
# On a Redis Cluster the keys of one request live on several nodes: the script is called
# once per key there (`RedisGcra`), each call touching one key.
ADMIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local limits = tonumber(ARGV[1])
local reply = {-1, -1}
local admitted = true
local next_tats = {}
for i = 1, limits do
  local interval = tonumber(ARGV[2 + 2 * i])
  local capacity = tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allow_at = next_tat - capacity
  local at = #reply
  if now < allow_at then
    admitted = false
    reply[at + 1] = 0
    reply[at + 2] = string.format('%.0f', tat - now)
    reply[at + 3] = string.format('%.0f', allow_at - now)
  else
    next_tats[i] = next_tat
    reply[at + 1] = 1
    reply[at + 2] = string.format('%.0f', next_tat - now)
    reply[at + 3] = '0'
  end
end
if admitted then
  for i = 1, limits do
    local ttl_ms = math.ceil((next_tats[i] - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', next_tats[i]), 'PX', ttl_ms)
  end
end
local key = limits + 1
if ARGV[2] == '1' then
  reply[2] = 0
  if admitted then
    local claim = 4 + 2 * limits
    local now_ms = math.floor(now / 1000)
    local slots = KEYS[key]
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now_ms)
    if redis.call('ZCARD', slots) < tonumber(ARGV[claim]) then
      redis.call('ZADD', slots, now_ms + tonumber(ARGV[claim + 1]), ARGV[claim + 2])
      redis.call('PEXPIRE', slots, ARGV[claim + 1])
      reply[2] = 1
    end
  end
  key = key + 1
end
if ARGV[3] ~= '' then
  reply[1] = redis.call('SISMEMBER', KEYS[key], ARGV[3])
end
return reply
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


class MemoryGcra:
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

    def forget(self, *, prefixes: Sequence[str] = (), keys: Sequence[str] = ()) -> None:
        """Drop the counts under `keys` and under every key that starts with one of
        `prefixes`: those of a deleted consumer or rule."""
        gone, starts = set(keys), tuple(prefixes)
        self._tats = {
            key: tat
            for key, tat in self._tats.items()
            if key not in gone and not key.startswith(starts)
        }


@dataclass(frozen=True, slots=True)
class SetMembership:
    """A question sent in the same round trip as the limits: is `member` in the set `key`?"""

    key: str
    member: str


@dataclass(frozen=True, slots=True)
class RedisVerdict:
    """What Redis said about one request: each limit's outcome, whether the in-flight slot
    was granted (None: no claim), whether the member is in the set (None: none asked)."""

    outcomes: list[LimitOutcome]
    granted: bool | None
    member: bool | None


class _Script:
    """A Lua script called by its SHA1, loaded again when Redis has forgotten it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest().encode()


_ADMIT = _Script(ADMIT_SCRIPT)
# Arguments of the script's command, encoded once: redis-py sends bytes as they are. The
# command's name stays text: a cluster client looks up its routing policy by it.
_EVALSHA = "EVALSHA"
_NO_MEMBER = b""
_CLAIM, _NO_CLAIM = b"1", b"0"


class RedisGcra:
    """GCRA in Redis: one script call per request (`ADMIT_SCRIPT`: its limits, its in-flight
    slot claim and a set membership question), batched with those of concurrent requests
    (`app.shared.redis.RedisPipeliner`); on a cluster, one call per key."""

    def __init__(self, redis: SharedRedis, *, prefix: str) -> None:
        self._redis = redis.client
        self._pipeliner = redis.pipeliner
        # A cluster cannot run one script over keys of several slots.
        self._per_key = redis.cluster
        self._prefix = prefix + "rl:"
        self._in_flight_prefix = prefix + "if:"
        # Fire-and-forget writes (refunds, releases), kept referenced until they finish.
        self._background: set[asyncio.Task[Any]] = set()
        self._loading: asyncio.Future[None] | None = None

    async def admit(
        self,
        checks: Sequence[LimitCheck],
        claim: SlotClaim | None = None,
        membership: SetMembership | None = None,
    ) -> RedisVerdict:
        """One round trip: the limits' outcomes, the slot claim, the membership question."""
        commands = self._commands(checks, claim, membership)
        replies = await self._pipeliner.execute(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis restarted or its script cache was flushed: load and ask again.
            await self._load()
            replies = await self._pipeliner.execute(commands)
        member: bool | None = None
        granted: bool | None = None
        outcomes = []
        limits = iter(checks)
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
            if not isinstance(reply, list) or len(reply) < 2 or len(reply) % 3 != 2:
                raise ResponseError(f"unexpected reply from the admission script: {reply!r}")
            if reply[0] != -1:
                member = reply[0] == 1
            if reply[1] != -1:
                granted = reply[1] == 1
            for at in range(2, len(reply), 3):
                _, limit = next(limits)
                outcomes.append(
                    _outcome(
                        limit,
                        admitted=reply[at] == 1,
                        ahead_us=int(reply[at + 1]),
                        retry_us=int(reply[at + 2]),
                    )
                )
        if len(outcomes) != len(checks):
            raise ResponseError(f"the admission script answered {len(outcomes)} limits")
        if self._per_key and not all(outcome.admitted for outcome in outcomes):
            await self._refund([c for c, o in zip(checks, outcomes, strict=True) if o.admitted])
        return RedisVerdict(outcomes=outcomes, granted=granted, member=member)

    def _commands(
        self,
        checks: Sequence[LimitCheck],
        claim: SlotClaim | None,
        membership: SetMembership | None,
    ) -> list[Command]:
        """The script's calls: one for the whole request, or on a cluster one per key."""
        if self._per_key:
            commands = [self._command([check], None, None) for check in checks]
            if claim is not None:
                commands.append(self._command((), claim, None))
            if membership is not None:
                commands.append(self._command((), None, membership))
            return commands
        return [self._command(checks, claim, membership)]

    def _command(
        self,
        checks: Sequence[LimitCheck],
        claim: SlotClaim | None,
        membership: SetMembership | None,
    ) -> Command:
        prefix = self._prefix
        keys = [prefix + key for key, _ in checks]
        arguments: list[Any] = [
            len(checks),
            _NO_CLAIM if claim is None else _CLAIM,
            _NO_MEMBER if membership is None else membership.member,
        ]
        for _, limit in checks:
            arguments += (limit.interval_us, limit.capacity_us)
        if claim is not None:
            keys.append(self._in_flight_prefix + claim.key)
            arguments += (claim.limit, claim.lease_ms, claim.token)
        if membership is not None:
            keys.append(membership.key)
        return (_EVALSHA, _ADMIT.sha, len(keys), *keys, *arguments)

    async def _load(self) -> None:
        """Load the script once for all the requests that found it missing at the same
        moment (after a restart or a failover), not once per request: a burst would
        otherwise open a connection per request (a cluster node refuses past its pool)."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._load_scripts())
        await asyncio.shield(self._loading)

    async def _load_scripts(self) -> None:
        # On a cluster SCRIPT LOAD goes to every primary.
        await self._redis.script_load(_ADMIT.source)

    def _in_background(self, write: Any) -> None:
        task = asyncio.ensure_future(write)
        self._background.add(task)
        task.add_done_callback(_forget_background(self._background))

    async def _refund(self, checks: Sequence[LimitCheck]) -> None:
        """On a cluster, give back what the limits that admitted a refused request counted,
        before the refusal is answered (a second round trip, on refusals only)."""
        if not checks:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, limit in checks:
            pipe.eval(GCRA_REFUND_SCRIPT, 1, self._prefix + key, limit.interval_us)
        await pipe.execute()

    def release(self, claim: SlotClaim) -> None:
        """Give the slot back without waiting; a lost release ends with the lease."""
        self._in_background(self._redis.zrem(self._in_flight_prefix + claim.key, claim.token))

    async def forget(
        self,
        *,
        prefixes: Sequence[str] = (),
        keys: Sequence[str] = (),
        in_flight: Sequence[str] = (),
    ) -> None:
        """Delete the counts under `keys` and under every key that starts with one of
        `prefixes`, and the in-flight slot sets `in_flight`: those of a deleted consumer or
        rule. Redis errors are the caller's, who holds the client's discipline."""
        await delete_keys(
            self._redis,
            keys=[self._prefix + key for key in keys]
            + [self._in_flight_prefix + key for key in in_flight],
            prefixes=[self._prefix + prefix for prefix in prefixes],
        )

    async def aclose(self) -> None:
        """Let the writes still under way finish (briefly)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=1.0)


def _forget_background(tasks: set["asyncio.Task[Any]"]) -> Any:
    def forget(task: "asyncio.Task[Any]") -> None:
        tasks.discard(task)
        if not task.cancelled():
            # A lost refund or release is bounded by its TTL or lease; nothing to tell.
            task.exception()

    return forget

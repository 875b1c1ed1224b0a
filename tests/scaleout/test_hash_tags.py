"""Every Lua script and transaction that touches several keys names them with one hash tag,
so Redis Cluster runs it on one node (no CROSSSLOT). The scan finds every script in `app/`;
one that touches several keys must be listed here with its key builder."""

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis
from redis.crc import key_slot

from app.cache.stores import CODING_SEPARATOR, RedisCache
from app.discovery.selfreg import SelfRegistry
from app.security.quotas import QuotaCounter, QuotaPeriods
from app.shared.redis import SharedRedis
from app.traffic.gcra import RateLimit, RedisGcra, SetMembership, SlotClaim
from tests.fixtures.databases import ROOT

# Module -> how many keys its multi-key scripts touch.
MULTI_KEY_SCRIPTS = {"app/security/quotas.py": 2}
# Modules whose script takes any number of keys (indexed by a variable): on one node all of a
# request's keys in one call, on a cluster one call per key (tested below).
VARIABLE_KEY_SCRIPTS = {"app/traffic/gcra.py"}


def _hash_tag(key: str) -> str | None:
    """The part of `key` Redis Cluster hashes, when it has a hash tag."""
    match = re.search(r"\{([^}]+)\}", key)
    return match.group(1) if match else None


def _scripts() -> list[tuple[str, int]]:
    """(module, keys touched) for every Lua script held in a string in `app/`; -1 for a
    script that indexes its keys by a variable."""
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "redis.call(" in node.value
            ):
                indexes = [int(i) for i in re.findall(r"KEYS\[(\d+)\]", node.value)]
                variable = re.search(r"KEYS\[[^\]\d]", node.value) is not None
                keys = -1 if variable else max(indexes, default=0)
                found.append((Path(path).relative_to(ROOT).as_posix(), keys))
    return found


def test_the_scan_finds_the_scripts() -> None:
    modules = {module for module, _ in _scripts()}
    assert {
        "app/traffic/gcra.py",
        "app/security/quotas.py",
        "app/policy/idempotency.py",
        "app/cache/stores.py",
    } <= modules


def test_every_script_with_several_keys_is_known() -> None:
    several = {module: keys for module, keys in _scripts() if keys > 1}
    assert several == MULTI_KEY_SCRIPTS
    assert {module for module, keys in _scripts() if keys == -1} == VARIABLE_KEY_SCRIPTS


async def test_the_admission_script_is_called_once_per_key_on_a_cluster() -> None:
    """A request's limits, in-flight set and revoked-key set hash to different slots."""
    client = Redis()  # never connected: the limiter only builds its calls here
    checks = [("c:1:second", RateLimit.of("second", limit=5, period_s=1))] * 2
    claim = SlotClaim(key="c:1", limit=2, lease_ms=1000)
    membership = SetMembership("gw:apikeys:revoked", "abc")
    try:
        for kind, calls in (("cluster", [1, 1, 1, 1]), ("node", [4])):
            gcra = RedisGcra(SharedRedis(client, retry_s=1.0, kind=kind), prefix="gw:")  # type: ignore[arg-type]
            commands = gcra._commands(checks, claim, membership)
            # EVALSHA, sha, the number of keys, ...
            assert [command[2] for command in commands] == calls
    finally:
        await client.aclose()


def test_a_consumers_quota_counters_share_one_slot() -> None:
    quotas = QuotaCounter(None, prefix="gw:")
    periods = QuotaPeriods.at(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    for consumer_id in (1, 42, 10**9):
        day, month = quotas._keys(consumer_id, periods)
        assert _hash_tag(day) == _hash_tag(month) == f"c{consumer_id}"
        assert key_slot(day.encode()) == key_slot(month.encode())


def test_a_services_registrations_share_one_slot() -> None:
    """Written together in one MULTI/EXEC transaction."""
    registry = SelfRegistry(redis=None, prefix="gw:", default_ttl_s=10)
    for service in ("market-data", "orders"):
        expiry, meta = registry._expiry_key(service), registry._meta_key(service)
        assert _hash_tag(expiry) == _hash_tag(meta) == service
        assert key_slot(expiry.encode()) == key_slot(meta.encode())


async def test_a_cache_entry_its_encoded_copies_and_its_lock_share_one_slot() -> None:
    client = Redis()  # never connected: the store only names keys here
    store = RedisCache(SharedRedis(client, retry_s=1.0), prefix="gw:")
    try:
        for key in ("GET /partner/v1/quotes?symbols=AAPL", "GET /web/v1/dashboard|h:{x}"):
            entry = store._entry(key)
            copies = [entry + CODING_SEPARATOR + coding for coding in ("gzip", "br", "zstd")]
            names = [entry, *copies, store._lock(key)]
            assert {key_slot(name.encode()) for name in names} == {key_slot(entry.encode())}
    finally:
        await client.aclose()

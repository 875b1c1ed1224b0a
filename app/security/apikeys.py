"""API keys of consumers: issued once, stored only as a hash, checked against the snapshot.

A key reads `sbk_<prefix>_<secret>`: the prefix is public (it names the key in lists and
finds its record), the secret is 256 random bits. The store keeps an HMAC-SHA256 of the
whole key under the server's pepper (plain SHA-256 when no pepper is configured, which is
still safe for a 256-bit secret), so a leaked table does not yield usable keys.

Checking a key never touches the database: records live in the config snapshot. Revocation
is pushed to every process by the change notice that reloads the snapshot, and, with Redis,
also written to a set of revoked prefixes that each request checks, so a revoked key stops
working everywhere before a peer process has reloaded. The policy chain asks that set in the
same pipeline as the request's rate limits (`app.policy.chain`): one round trip per request.
"""

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from app.errors import Unauthorized
from app.security.authenticate import Presented
from app.security.principal import Principal
from app.settings import Settings
from app.shared.redis import SharedRedis
from app.store.snapshot import ApiKeyConfig, ConfigSnapshot, ConfigStore

logger = logging.getLogger("gateway.security")

API_KEY_HEADER = "X-API-Key"
KEY_MARK = "sbk"
_PREFIX_BYTES = 6
_SECRET_BYTES = 32
_KEY_PATTERN = re.compile(r"^sbk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
# Compared against when the prefix is unknown, so both failures cost the same.
_DECOY_HASH = "sha256:" + "0" * 64


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly generated key: `key` is shown to the client once and never stored."""

    key: str
    prefix: str
    key_hash: str


class KeyHasher:
    """Hashes keys under the server's pepper; the stored value names its scheme."""

    def __init__(self, pepper: str | None) -> None:
        self._pepper = pepper.encode() if pepper else None

    def hash(self, key: str) -> str:
        if self._pepper is not None:
            return "hmac-sha256:" + self._hmac(key, self._pepper)
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    def matches(self, key: str, stored_hash: str) -> bool:
        """Constant-time comparison of a presented key with a stored hash."""
        if stored_hash.startswith("hmac-sha256:"):
            if self._pepper is None:
                logger.error("an API key was hashed with a pepper but none is configured")
                return False
            candidate = "hmac-sha256:" + self._hmac(key, self._pepper)
        else:
            # Also keys issued before a pepper was configured: valid under their own scheme.
            candidate = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return hmac.compare_digest(candidate.encode(), stored_hash.encode())

    @staticmethod
    def _hmac(key: str, pepper: bytes) -> str:
        return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def key_hasher(settings: Settings) -> KeyHasher:
    pepper = settings.access.api_key_pepper
    return KeyHasher(pepper.get_secret_value() if pepper is not None else None)


def issue_key(hasher: KeyHasher) -> IssuedKey:
    """A fresh key and the hash to store for it."""
    prefix = secrets.token_hex(_PREFIX_BYTES)
    key = f"{KEY_MARK}_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return IssuedKey(key=key, prefix=prefix, key_hash=hasher.hash(key))


def key_prefix(key: str) -> str | None:
    """The public prefix of a well-formed key, None for anything else."""
    match = _KEY_PATTERN.match(key)
    return match.group(1) if match else None


def revoked_keys_set(settings: Settings) -> str:
    """The Redis set of revoked key prefixes shared by every gateway process."""
    return f"{settings.redis_prefix}apikeys:revoked"


async def announce_revocation(redis: SharedRedis | None, settings: Settings, prefix: str) -> None:
    """Tell every process at once that the key is revoked, ahead of their snapshot reload;
    `RedisUnavailable` when Redis cannot be told (the change notice still reaches them)."""
    if redis is None:
        return
    async with redis.answering() as client:
        await client.sadd(revoked_keys_set(settings), prefix)


def revoked() -> Unauthorized:
    return Unauthorized("The API key has been revoked.", headers=_CHALLENGE)


class ApiKeyAuthenticator:
    """Recognises `X-API-Key` and turns a valid key into its consumer's principal."""

    def __init__(self, config: ConfigStore, settings: Settings) -> None:
        self._config = config
        self._hasher = key_hasher(settings)
        # Each key's principal, built once per snapshot (a principal is immutable): the key
        # itself is still checked on every request.
        self._principals: dict[str, Principal] = {}
        self._principals_of: ConfigSnapshot | None = None

    async def authenticate(self, request: Presented) -> Principal | None:
        presented = request.headers.get(API_KEY_HEADER)
        if presented is None:
            return None
        presented = presented.strip()
        snapshot = self._config.current
        prefix = key_prefix(presented)
        record = snapshot.api_keys.get(prefix) if prefix is not None else None
        stored_hash = record.key_hash if record is not None else _DECOY_HASH
        if not self._hasher.matches(presented, stored_hash) or record is None:
            raise Unauthorized("The API key is not valid.", headers=_CHALLENGE)
        _check_usable(record)
        if snapshot is not self._principals_of:
            self._principals, self._principals_of = {}, snapshot
        principal = self._principals.get(record.prefix)
        if principal is None:
            principal = self._principals[record.prefix] = _principal(snapshot, record)
        return principal


def _principal(snapshot: ConfigSnapshot, record: ApiKeyConfig) -> Principal:
    """The principal of a key's consumer; 401 while the consumer is disabled."""
    consumer = snapshot.consumers.get(record.consumer_id)
    if consumer is None or not consumer.enabled:
        raise Unauthorized("The API key's consumer is disabled.", headers=_CHALLENGE)
    plan = snapshot.plans.get(consumer.plan) if consumer.plan is not None else None
    return Principal(
        subject=f"consumer:{consumer.name}",
        kind="consumer",
        credential="api_key",
        scopes=plan.scopes if plan is not None else frozenset(),
        account_ids=consumer.account_ids,
        consumer_id=consumer.consumer_id,
        plan=consumer.plan,
        extra={"key_prefix": record.prefix},
    )


def _check_usable(record: ApiKeyConfig) -> None:
    if record.revoked:
        raise revoked()
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise Unauthorized("The API key has expired.", headers=_CHALLENGE)

"""The shared resources of one gateway process, built in the lifespan (`app.main`)."""

from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.cache.cache import ResponseCache
from app.discovery.registry import ServiceRegistry
from app.policy.chain import PolicyChain
from app.policy.idempotency import IdempotencyLedger
from app.security.usage import UsageMeter
from app.security.web_identity import WebIdentity
from app.settings import Settings
from app.shared.redis import SharedRedis
from app.store.notices import ChangeNotices
from app.store.snapshot import ConfigStore
from app.streams.hub import QuoteHub
from app.upstreams.caller import UpstreamCaller


class Drain:
    """Whether this process is draining: told to stop, still serving, reported not ready.

    Created with the app (`create_app`), flipped by the server's signal handler
    (`app.serve`), read by `/readyz`.
    """

    def __init__(self) -> None:
        self.draining = False

    def begin(self) -> None:
        self.draining = True


@dataclass(frozen=True, slots=True)
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    config: ConfigStore
    registry: ServiceRegistry
    http: aiohttp.ClientSession
    caller: UpstreamCaller
    # None on embedded defaults; each concern then keeps its state in process.
    redis: SharedRedis | None
    # The trusted identity provider, web sessions and their authenticators.
    identity: WebIdentity
    # Reload after a committed config change and tell other processes.
    notices: ChangeNotices
    # Identify -> admit -> authorize -> quota, for every entry point.
    chain: PolicyChain
    idempotency: IdempotencyLedger
    # Responses of cached routes: memory, then Redis when configured (`app.cache`).
    cache: ResponseCache
    # Set on SIGTERM under `app.serve`: /readyz answers 503 while the process still serves.
    drain: Drain
    # The live quote streams: one upstream subscription per symbol, shared by every client.
    streams: QuoteHub
    # Each partner consumer's requests, counted by the edge, read by the developer portal.
    usage: UsageMeter

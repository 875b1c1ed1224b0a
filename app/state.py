"""The shared resources of one gateway process, built in the lifespan."""

from dataclasses import dataclass, field

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.discovery.registry import ServiceRegistry
from app.frontends.idempotency import IdempotencyLedger
from app.security.authenticate import Authenticator
from app.security.quotas import QuotaCounter
from app.security.web_identity import WebIdentity
from app.settings import Settings
from app.store.changes import ChangeNotices
from app.store.snapshot import ConfigStore
from app.traffic.policies import AdmissionControl
from app.upstreams.caller import UpstreamCaller


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    config: ConfigStore
    registry: ServiceRegistry
    http: aiohttp.ClientSession
    caller: UpstreamCaller
    # None on embedded defaults; each concern then keeps its state in process.
    redis: Redis | None = None
    # Tried in order: session cookie, bearer token, API key.
    authenticators: list[Authenticator] = field(default_factory=list)
    # The trusted identity provider, web sessions and their authenticators.
    identity: WebIdentity | None = None
    # Set in the lifespan: reload after a committed config change and tell other processes.
    notices: ChangeNotices | None = None
    # Rate limits and in-flight caps; None when the app was built without a lifespan.
    admission: AdmissionControl | None = None
    # Consumer quotas and order idempotency; None when the app was built without a lifespan.
    quotas: QuotaCounter | None = None
    idempotency: IdempotencyLedger | None = None

"""The policy chain: identify -> admit -> authorize -> count the quota, for every entry point.

One plain object, built once in the lifespan. A FastAPI route reaches it through its one
access dependency (`app.deps.RouteAccess`); any other entry point (pass-through routes,
batch sub-requests, MCP tool calls, stream connects) builds a `RequestContext` and calls
`PolicyChain.run` directly. Each stage runs at most once per request, whatever asks first;
what a stage decided is kept in the context (`app.policy.context`), never in the scope.

- identify: the authenticators, in order (session cookie, bearer token, API key);
- admit: the caller's rate limits and in-flight cap (`app.policy.admission`). Admission
  comes before authorization, as an unauthorized caller's attempts count against its limits
  too; a credential that fails to authenticate counts against the client address's limits
  before its 401 is answered, so guessing keys or tokens is rate limited like anything else.
  With Redis, an API key's revocation is asked in the same round trip. While Redis is down
  the revocations are those of the config snapshot (the change notice and the periodic
  reload carry them): reads with an API key keep working, and a key revoked on another
  process during the outage stops working here at this process's next reload;
- authorize: the route's audience and scopes (`app.security.rbac`), 401 or 403; a partner
  route also needs a client-credentials token's client linked to a consumer (403);
- introspect: a rule that asks (order entry and cancel) has a bearer token confirmed active
  at the provider (`app.security.introspection`), 401 or 503, when that is switched on;
- quota: a metered partner call counts once against its consumer's plan quotas.
"""

from collections.abc import Sequence

from app.errors import Unauthorized
from app.policy.admission import AdmissionControl
from app.policy.context import Admission, PolicyOutcome, RequestContext
from app.security.apikeys import revoked
from app.security.authenticate import Authenticator, identify
from app.security.introspection import TokenIntrospection
from app.security.jwt import confirm_linked_client
from app.security.principal import Principal
from app.security.quotas import QuotaCounter
from app.security.rbac import AccessRule, authorize
from app.shared.redis import RedisHealth
from app.store.snapshot import ConfigStore
from app.traffic.gcra import SetMembership


class PolicyChain:
    def __init__(
        self,
        *,
        authenticators: Sequence[Authenticator],
        admission: AdmissionControl,
        quotas: QuotaCounter,
        config: ConfigStore,
        revoked_keys_set: str | None,
        redis_health: RedisHealth | None,
        introspection: TokenIntrospection | None = None,
    ) -> None:
        self.authenticators = tuple(authenticators)
        self.admission = admission
        self.quotas = quotas
        self._config = config
        # The Redis set of revoked API key prefixes; None without Redis.
        self._revoked_keys_set = revoked_keys_set
        # Where an outage's fallback is reported (once per outage); None without Redis.
        self._redis_health = redis_health
        # None unless `identity.introspect_orders` is on.
        self._introspection = introspection

    async def run(self, context: RequestContext, rule: AccessRule) -> PolicyOutcome:
        """Let the request through under `rule`, or raise the 401/403/429/503 problem."""
        try:
            principal = await self.identify(context)
        except Unauthorized:
            if context.admission is None:
                await self._admit(context, None)
            raise
        await self._admit(context, principal)
        principal = authorize(principal, rule.audience, rule.scopes)
        confirm_linked_client(principal)
        introspection = self._introspection if rule.introspect else None
        if introspection is not None and principal.credential == "bearer":
            await introspection.confirm_active(context, deadline=context.deadline)
        if rule.metered:
            await self._count_quota(context, principal)
        assert context.admission is not None
        return PolicyOutcome(principal=principal, admission=context.admission)

    async def admit(self, context: RequestContext) -> Admission:
        """Identify and admit, without authorizing: a route open to anyone (a pass-through
        route with auth none). A credential that is presented and fails is still a 401."""
        try:
            principal = await self.identify(context)
        except Unauthorized:
            if context.admission is None:
                await self._admit(context, None)
            raise
        await self._admit(context, principal)
        assert context.admission is not None
        return context.admission

    async def identify(self, context: RequestContext) -> Principal | None:
        """The caller, identified once per request; None when no credential was presented."""
        if not context.identified:
            principal = await identify(context, self.authenticators)
            context.principal = principal
            context.identified = True
        return context.principal

    async def confirmed_principal(self, context: RequestContext) -> Principal | None:
        """The caller, for routes that need no admission (who am I, the admin API): identified,
        and an API key confirmed not revoked."""
        principal = await self.identify(context)
        membership = self._revocation_question(principal)
        if membership is not None and context.admission is None:
            self._confirm_not_revoked(await self.admission.is_member(membership))
        return principal

    async def _admit(self, context: RequestContext, principal: Principal | None) -> None:
        if context.admission is not None:
            return
        membership = self._revocation_question(principal)
        # Recorded before a refusal can be raised, so a claimed slot is always given back.
        context.admission = Admission()
        admission, member = await self.admission.admit(
            principal=principal,
            address=context.client_address,
            path=context.path,
            snapshot=self._config.current,
            membership=membership,
            route_limits=context.route_limits,
        )
        context.admission = admission
        if membership is not None:
            self._confirm_not_revoked(member)

    def _confirm_not_revoked(self, member: bool | None) -> None:
        """401 when another process revoked the key. When Redis cannot say (`member` is None),
        the snapshot's revocations stand: the key was found in it, so it passes; failing
        closed would take every partner's reads down with Redis."""
        if member:
            raise revoked()
        if member is None and self._redis_health is not None:
            self._redis_health.announce_fallback(
                "API keys are checked against this process's config snapshot only"
            )

    def _revocation_question(self, principal: Principal | None) -> SetMembership | None:
        if self._revoked_keys_set is None or principal is None:
            return None
        prefix = principal.extra.get("key_prefix") if principal.credential == "api_key" else None
        return SetMembership(self._revoked_keys_set, prefix) if prefix else None

    async def _count_quota(self, context: RequestContext, principal: Principal) -> None:
        if context.quota_counted or principal.consumer_id is None or principal.plan is None:
            return
        plan = self._config.current.plans.get(principal.plan)
        if plan is None:
            return
        context.quota_counted = True
        await self.quotas.consume(principal.consumer_id, plan)

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
  With Redis, an API key's revocation is asked in the same round trip;
- authorize: the route's audience and scopes (`app.security.rbac`), 401 or 403;
- quota: a metered partner call counts once against its consumer's plan quotas.
"""

from collections.abc import Sequence

from app.errors import ServiceUnavailable, Unauthorized
from app.policy.admission import AdmissionControl
from app.policy.context import Admission, PolicyOutcome, RequestContext
from app.security.apikeys import revoked
from app.security.authenticate import Authenticator, identify
from app.security.principal import Principal
from app.security.quotas import QuotaCounter
from app.security.rbac import AccessRule, authorize
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
    ) -> None:
        self.authenticators = tuple(authenticators)
        self.admission = admission
        self.quotas = quotas
        self._config = config
        # The Redis set of revoked API key prefixes; None without Redis.
        self._revoked_keys_set = revoked_keys_set

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
        if rule.metered:
            await self._count_quota(context, principal)
        assert context.admission is not None
        return PolicyOutcome(principal=principal, admission=context.admission)

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
            _confirm_not_revoked(await self.admission.is_member(membership))
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
        )
        context.admission = admission
        if membership is not None:
            _confirm_not_revoked(member)

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


def _confirm_not_revoked(member: bool | None) -> None:
    """401 when another process revoked the key; 503 when Redis cannot say (failing open
    would let a revoked key through during an outage)."""
    if member is None:
        raise ServiceUnavailable(
            "API keys cannot be checked right now; retry shortly.",
            headers={"Retry-After": "1"},
        )
    if member:
        raise revoked()

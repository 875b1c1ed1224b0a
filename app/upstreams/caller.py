"""The one way the gateway calls a platform service.

Owns the pooled aiohttp session (the only place one is created) and the resilient call:
discover instances -> balance -> breaker -> bulkhead -> deadline -> aiohttp -> retry policy
-> decode. Identical concurrent GETs share one call (`collapse`). Failures become typed
errors: `UpstreamError` 502, `UpstreamUnavailable` 503 (also "circuit open" and "bulkhead
full"), `UpstreamTimeout` 504.

Timeouts, as Envoy has them: the request's deadline (the route timeout) bounds the call with
all its attempts; each attempt waits at most the service's per-try timeout (its policy's
`per_try_timeout_ms`, else the service's `timeout_ms`) of what is left. Without a request
deadline (background calls) the call is bounded by one per-try timeout per attempt. A retry
after a timeout goes to another instance or not at all (see `app.traffic.retry`).
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import BaseModel, ValidationError
from yarl import URL

from app.discovery.registry import ServiceRegistry
from app.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from app.observability.access_log import UpstreamCall, access_record_var
from app.observability.metrics import ClientMetrics, retry_budget_refusals, upstream_retries
from app.observability.request_id import request_id_var
from app.observability.tracing import ClientTry, RequestTrace, trace_var
from app.settings import UpstreamSettings
from app.store.snapshot import InstanceConfig, ServiceConfig
from app.traffic.balancer import Balancer
from app.traffic.breaker import BreakerBoard, CircuitBreaker, CircuitOpen, CircuitState
from app.traffic.bulkhead import Bulkhead, Bulkheads
from app.traffic.collapse import RequestCollapser, collapse_key
from app.traffic.deadline import DEADLINE_HEADER, Deadline, deadline_var
from app.traffic.retry import RetryBudget, RetryBudgets, backoff_s, is_repeatable, retry_after_s
from app.traffic.shared_timer import SharedTimer

M = TypeVar("M", bound=BaseModel)
_events = logging.getLogger("gateway.upstream")

_FAILURE_BY_STATUS: dict[int, type[UpstreamError]] = {
    503: UpstreamUnavailable,
    504: UpstreamTimeout,
}


# Not frozen: made for every call, and a frozen dataclass's constructor costs four times a
# plain one's (each field set through `object.__setattr__`). Nothing changes one.
@dataclass(slots=True)
class UpstreamResponse:
    service: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    # A streamed call's open response (`UpstreamCaller.stream`): its body is read from here,
    # not `body`, and the one who streams it calls `release()`.
    stream: aiohttp.ClientResponse | None = None

    def release(self) -> None:
        """Give a streamed response's connection back (or close it, when its body was not
        read to the end)."""
        if self.stream is not None:
            self.stream.release()

    def model(self, model: type[M]) -> M:
        """Decode the body into `model`; a body that does not fit is the upstream's fault."""
        try:
            return model.model_validate_json(self.body)
        except ValidationError as exc:
            raise UpstreamError(
                f"{self.service} sent a response the gateway could not read "
                f"({exc.error_count()} error(s)).",
                service=self.service,
            ) from exc

    def detail(self) -> str:
        """The upstream's own explanation of an error, when it gave one."""
        try:
            detail = orjson.loads(self.body).get("detail")
        except (orjson.JSONDecodeError, AttributeError):
            detail = None
        return detail if isinstance(detail, str) else f"{self.service} answered {self.status}"


def create_session(settings: UpstreamSettings) -> aiohttp.ClientSession:
    """The worker's pooled session; built in the lifespan, closed after it."""
    connector = aiohttp.TCPConnector(
        limit=settings.pool_limit,
        limit_per_host=settings.pool_limit_per_host,
        keepalive_timeout=settings.keepalive_timeout_s,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # The session serves every caller: an upstream's Set-Cookie must never travel with
        # another caller's request. Not keeping a jar also spares the per-request cookie
        # filtering (~70 us of ~240 us CPU per upstream call, measured).
        cookie_jar=aiohttp.DummyCookieJar(),
        json_serialize=lambda value: orjson.dumps(value).decode(),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


class _ServiceRoute:
    """What every call to one service needs and only its configuration changes: its
    policies, per-try timeout, retry budget, bulkhead, balancer and instances' breakers,
    found once per configuration snapshot rather than on every call."""

    __slots__ = ("balancer", "breakers", "budget", "bulkhead", "config", "per_try_s", "policy")

    def __init__(
        self,
        config: ServiceConfig,
        *,
        budget: RetryBudget,
        bulkhead: Bulkhead,
        balancer: Balancer,
    ) -> None:
        self.config = config
        self.policy = config.policy
        per_try_ms = config.policy.retries.per_try_timeout_ms
        # An attempt's time: the policy's per-try timeout, else the service's timeout.
        self.per_try_s = per_try_ms / 1000 if per_try_ms is not None else config.timeout_s
        self.budget = budget
        self.bulkhead = bulkhead
        self.balancer = balancer
        # By instance URL, filled in as instances are called (`UpstreamCaller._breaker`).
        self.breakers: dict[str, CircuitBreaker] = {}


class _Call:
    """One logical upstream request and how far it has got, whatever number of tries it
    takes: one plain object per call, filled in as the tries go."""

    __slots__ = (
        "attempts",
        "data",
        "headers",
        "instance",
        "method",
        "params",
        "path",
        "retries",
        "route",
        "service",
        "status",
        "streamed",
        "timeout_s",
    )

    def __init__(
        self,
        service: str,
        route: _ServiceRoute,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | AsyncIterable[bytes] | None,
        headers: dict[str, str],
        timeout_s: float | None,
        *,
        streamed: bool = False,
        attempts: int | None = None,
    ) -> None:
        self.service = service
        self.route = route
        self.method = method
        self.path = path
        self.params = params
        self.data = data
        # The call's own dict: each try sets its deadline and trace headers in it.
        self.headers = headers
        self.timeout_s = timeout_s
        # `stream`: the response is handed over open; `attempts` overrides the service's.
        self.streamed = streamed
        self.attempts = attempts
        # The last try's instance and status, and the retries so far.
        self.instance: str | None = None
        self.status: int | None = None
        self.retries = 0


class _Failure:
    """A try that failed; `error` is what the client sees if it is not retried."""

    __slots__ = ("cause", "error", "kind", "response", "retry_after", "status")

    def __init__(
        self,
        error: UpstreamError,
        *,
        kind: str,
        cause: BaseException | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        response: UpstreamResponse | None = None,
    ) -> None:
        self.error = error
        # connect | timeout | status | broken
        self.kind = kind
        self.cause = cause
        self.status = status
        self.retry_after = retry_after
        # A streamed call's 5xx: passed through as it is when it is not retried.
        self.response = response


class UpstreamCaller:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        registry: ServiceRegistry,
        settings: UpstreamSettings,
    ) -> None:
        self._session = session
        self._registry = registry
        self._settings = settings
        self.breakers = BreakerBoard()
        self.bulkheads = Bulkheads()
        self.budgets = RetryBudgets()
        self.collapser: RequestCollapser[UpstreamResponse] = RequestCollapser()
        self.metrics = ClientMetrics()
        self._routes: dict[str, _ServiceRoute] = {}
        # Every try's bound, on one event-loop timer.
        self._timer = SharedTimer()
        # The usual tries' aiohttp timeouts, made once (see `_send`).
        connect_s = settings.connect_timeout_s
        self._timeout = aiohttp.ClientTimeout(connect=connect_s)
        self._streamed_timeout = aiohttp.ClientTimeout(connect=connect_s, sock_connect=connect_s)

    @property
    def registry(self) -> ServiceRegistry:
        return self._registry

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        collapse: bool | None = None,
    ) -> UpstreamResponse:
        """Call `service` resiliently; 5xx, timeouts and connection errors raise.

        `collapse` (default: on for GETs, unless the settings switch it off) lets identical
        concurrent calls share one answer; every header passed here is part of what must be
        identical.
        """
        method = method.upper()
        route = self._route(service)
        outgoing = {"x-request-id": request_id_var.get()}
        data = None
        if json_body is not None:
            data = orjson.dumps(json_body)
            outgoing["content-type"] = "application/json"
        if headers:
            outgoing.update(headers)
        call = _Call(service, route, method, path, params, data, outgoing, timeout_s)
        if collapse is None:
            collapse = self._settings.collapse_gets and method == "GET" and data is None
        if not collapse or not self._some_circuit_closed(call):
            # Without a closed circuit a call is a half-open circuit's probe or refused at
            # once: the breaker lets one probe through, and nobody queues behind it.
            return await self._call(call)
        key = collapse_key(service, path, params=params, headers=outgoing)
        deadline = deadline_var.get()
        shared = self.collapser.run(key, lambda: self._call(call))
        if deadline is None:
            return await shared
        try:
            # A follower keeps its own deadline even when the leader's is longer.
            with self._timer.bound(max(deadline.remaining_s(), 0.0)):
                return await shared
        except TimeoutError:
            raise _deadline_passed(service) from None

    async def websocket(
        self, service: str, path: str, *, heartbeat_s: float
    ) -> tuple[str, aiohttp.ClientWebSocketResponse]:
        """A WebSocket to one routable instance of `service` (a stream's upstream), opened
        within the connect timeout; the caller owns it. UpstreamUnavailable when none opens."""
        instances = self._registry.routable(service)
        if not instances:
            raise UpstreamUnavailable(f"{service} has no enabled instance.", service=service)
        instance = self._registry.balancer(service).pick(instances)
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                socket = await self._session.ws_connect(
                    instance.url + path,
                    heartbeat=heartbeat_s,
                    headers={"x-request-id": request_id_var.get()},
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(
                f"{service} stream could not be opened ({type(exc).__name__}).", service=service
            ) from exc
        return instance.url, socket

    async def stream(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        attempts: int | None = None,
    ) -> UpstreamResponse:
        """Call `service` resiliently and hand its response over open, whatever its status
        (a 5xx that is not retried included): its body is read from `stream`, and the
        caller calls `release()`. Timeouts, breaker, bulkhead, balancing and retries as for
        `request`; a body given as an iterable is sent as it arrives, and such a call is
        never retried (it cannot be sent twice). `path` (with its query, when `params` is
        None) is sent exactly as given, already percent-encoded. Connection failures and
        timeouts raise."""
        outgoing = {"x-request-id": request_id_var.get()}
        if headers:
            outgoing.update(headers)
        call = _Call(
            service,
            self._route(service),
            method.upper(),
            path,
            params,
            body,
            outgoing,
            timeout_s,
            streamed=True,
            attempts=attempts,
        )
        return await self._call(call)

    async def fetch(
        self,
        service: str,
        method: str,
        path: str,
        model: type[M],
        **kwargs: Any,
    ) -> M:
        """Call and decode into `model`; an upstream 4xx passes through as its own status."""
        response = await self.request(service, method, path, **kwargs)
        if response.status >= 400:
            raise UpstreamRejected(response.detail(), status=response.status, service=service)
        return response.model(model)

    def _route(self, service: str) -> _ServiceRoute:
        """The service's route for the configuration in force."""
        config = self._registry.service(service)
        route = self._routes.get(service)
        if route is None or route.config is not config:
            policy = config.policy
            route = self._routes[service] = _ServiceRoute(
                config,
                budget=self.budgets.budget(service, policy.retries),
                bulkhead=self.bulkheads.bulkhead(service, policy.bulkhead),
                balancer=self._registry.balancer(service),
            )
        return route

    def _breaker(self, call: _Call, url: str) -> CircuitBreaker:
        breaker = call.route.breakers.get(url)
        if breaker is None:
            breaker = call.route.breakers[url] = self.breakers.breaker(
                call.service, url, call.route.policy.breaker
            )
        return breaker

    async def _call(self, call: _Call) -> UpstreamResponse:
        """The call with every try it takes, written into the request's access record; a
        failure logged.

        One coroutine from the first try to the last: choosing the instance, its breaker,
        the bulkhead, the try's timeout, trace and metrics, and the retry decision are all
        synchronous, so nearly every call awaits only the send (a full bulkhead and a
        retry's backoff are the other waits)."""
        started = time.perf_counter()
        error: str | None = None
        try:
            service, route = call.service, call.route
            route.budget.record_call()
            per_try_s = call.timeout_s if call.timeout_s is not None else route.per_try_s
            deadline = deadline_var.get()
            ends_at = (
                deadline.expires_at
                if deadline is not None
                else time.monotonic() + per_try_s * route.policy.retries.attempts
            )
            # A streamed upload's head is bounded by its reads (the body is still arriving
            # from the client), every other try by its timeout; and it is never retried.
            uploading = call.streamed and isinstance(call.data, AsyncIterable)
            # Made by the first retry: nearly every call has none.
            tried: AbstractSet[str] = _NONE
            timed_out: AbstractSet[str] = _NONE
            last_failure: _Failure | None = None
            while True:
                if deadline is not None and deadline.expires_at <= time.monotonic():
                    raise _deadline_passed(service)
                try:
                    instance, breaker = self._choose(call, tried=tried, excluded=timed_out)
                except CircuitOpen:
                    if last_failure is not None:
                        # The failure that opened the last circuit says more than "circuit
                        # open".
                        raise last_failure.error from last_failure.cause
                    raise
                call.instance = instance.url
                bulkhead = route.bulkhead
                # Whether the try said something about the instance (None: it did not).
                outcome: bool | None = None
                try:
                    if not bulkhead.try_enter():
                        await bulkhead.enter(max_wait_s=_time_left(ends_at, deadline))
                    try:
                        timeout_s, cut_by_deadline = _try_timeout_s(
                            service, per_try_s, ends_at, deadline
                        )
                        call.headers[DEADLINE_HEADER] = str(max(int(timeout_s * 1000), 1))
                        request_trace = trace_var.get()
                        client_try = (
                            None
                            if request_trace is None
                            else _start_client_try(request_trace, call, instance)
                        )
                        failure: _Failure | None = None
                        status: int | None = None
                        error_type: str | None = "cancelled"
                        sent_at = time.perf_counter()
                        try:
                            with (
                                self._timer.bound(None if uploading else timeout_s),
                                route.balancer.track(instance),
                            ):
                                if call.streamed:
                                    answer = await self._send(call, instance, timeout_s)
                                    body = b""
                                else:
                                    async with self._send(call, instance, timeout_s) as answer:
                                        body = await answer.read()
                            status, error_type = answer.status, None
                        except (TimeoutError, aiohttp.ClientError) as exc:
                            failure = _send_failure(
                                service,
                                exc,
                                connect_s=min(self._settings.connect_timeout_s, timeout_s),
                                timeout_s=timeout_s,
                            )
                            error_type = failure.kind
                        finally:
                            call.status = status
                            self.metrics.observe(
                                service=service,
                                instance=instance.url,
                                method=call.method,
                                status=status,
                                error_type=error_type or "",
                                seconds=time.perf_counter() - sent_at,
                            )
                            if client_try is not None:
                                client_try.end(status=status, error_type=error_type)
                        if failure is None:
                            if call.streamed and not uploading:
                                _bound_body_reads(answer, timeout_s)
                            response = UpstreamResponse(
                                service,
                                answer.status,
                                answer.headers,
                                body,
                                stream=answer if call.streamed else None,
                            )
                            outcome = answer.status < 500
                            if outcome:
                                return response
                            failure = _status_failure(call, response)
                        elif not (failure.kind == "timeout" and cut_by_deadline):
                            # A timeout only says something about the instance when it was
                            # the service's own; a short client deadline is not its fault.
                            outcome = False
                    finally:
                        bulkhead.leave()
                finally:
                    if outcome is None:
                        breaker.release()
                    else:
                        if outcome:
                            breaker.record_success()
                        else:
                            breaker.record_failure()
                        self._registry.health.record_call(
                            service, instance.url, ok=outcome, policy=route.policy.ejection
                        )
                tried = {*tried, instance.url}
                if failure.kind == "timeout":
                    timed_out = {*timed_out, instance.url}
                last_failure = failure
                delay = self._retry_delay(
                    call,
                    failure,
                    retry=call.retries + 1,
                    repeatable=is_repeatable(call.method, call.headers) and not uploading,
                    ends_at=ends_at,
                    timed_out=timed_out,
                )
                if delay is None:
                    if failure.response is not None:
                        return failure.response
                    raise failure.error from failure.cause
                if failure.response is not None:
                    failure.response.release()
                call.retries += 1
                await asyncio.sleep(delay)
        except UpstreamError as failed:
            error = failed.slug
            _upstream_failure_logged(call, failed)
            raise
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        finally:
            record = access_record_var.get()
            if record is not None:
                record.add_upstream_call(
                    UpstreamCall(
                        service=call.service,
                        method=call.method,
                        instance=call.instance,
                        status=call.status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                        retries=call.retries,
                        error=error,
                    )
                )

    def _some_circuit_closed(self, call: _Call) -> bool:
        return any(
            self._breaker(call, instance.url).state is CircuitState.closed
            for instance in self._registry.routable(call.service)
        )

    def _choose(
        self, call: _Call, *, tried: AbstractSet[str], excluded: AbstractSet[str]
    ) -> tuple[InstanceConfig, CircuitBreaker]:
        """An instance whose circuit lets the call through, preferring one not tried yet and
        never one in `excluded`."""
        instances = self._registry.routable(call.service)
        if not instances:
            raise UpstreamUnavailable(
                f"{call.service} has no enabled instance.", service=call.service
            )
        if len(instances) == 1:
            # The common case: one instance, nothing to balance between.
            instance = instances[0]
            if instance.url not in excluded:
                breaker = self._breaker(call, instance.url)
                if breaker.try_acquire():
                    return instance, breaker
            raise CircuitOpen(call.service)
        open_for_calls = [
            (instance, breaker)
            for instance in instances
            if instance.url not in excluded
            and (breaker := self._breaker(call, instance.url)).available()
        ]
        while open_for_calls:
            untried = [pair for pair in open_for_calls if pair[0].url not in tried]
            pool = untried or open_for_calls
            instance = call.route.balancer.pick([pair[0] for pair in pool])
            breaker = next(b for i, b in pool if i is instance)
            if breaker.try_acquire():
                return instance, breaker
            open_for_calls = [pair for pair in open_for_calls if pair[0] is not instance]
        raise CircuitOpen(call.service)

    def _send(
        self, call: _Call, instance: InstanceConfig, timeout_s: float
    ) -> "aiohttp.client._RequestContextManager":
        """One try's aiohttp request, to await (streamed: for its head) or to enter. The try
        is bounded by the caller's timer (`SharedTimer`), so aiohttp keeps only its connect
        timeout, which nothing but a new connection waits under."""
        # A try with less time left than the connect timeout connects within that time.
        short = timeout_s < self._settings.connect_timeout_s
        if not call.streamed:
            return self._session.request(
                call.method,
                instance.url + call.path,
                params=call.params,
                data=call.data,
                headers=call.headers,
                timeout=aiohttp.ClientTimeout(connect=timeout_s) if short else self._timeout,
                allow_redirects=False,
            )
        if isinstance(call.data, AsyncIterable):
            # A streamed upload: each read waits at most `timeout_s`, the head's included.
            connect_s = min(self._settings.connect_timeout_s, timeout_s)
            timeout = aiohttp.ClientTimeout(
                connect=connect_s, sock_connect=connect_s, sock_read=timeout_s
            )
        elif short:
            timeout = aiohttp.ClientTimeout(connect=timeout_s, sock_connect=timeout_s)
        else:
            timeout = self._streamed_timeout
        return self._session.request(
            call.method,
            # As given: already encoded, never normalized again (yarl would resolve an
            # encoded `..` against the service's paths).
            URL(instance.url + call.path, encoded=True),
            params=call.params,
            data=call.data,
            headers=call.headers,
            timeout=timeout,
            allow_redirects=False,
            auto_decompress=False,
            # Only what the caller asked for: no Accept-Encoding the client did not send.
            skip_auto_headers=_NO_AUTO_HEADERS,
        )

    def _retry_delay(
        self,
        call: _Call,
        failed: _Failure,
        *,
        retry: int,
        repeatable: bool,
        ends_at: float,
        timed_out: AbstractSet[str],
    ) -> float | None:
        """Seconds to wait before trying again, or None when this failure is final."""
        policy = call.route.policy.retries
        attempts = call.attempts if call.attempts is not None else policy.attempts
        if not repeatable or retry >= attempts:
            return None
        if failed.kind == "status" and failed.status not in policy.retry_on:
            return None
        if failed.kind == "connect" and not policy.retry_on_connect_errors:
            return None
        if failed.kind in {"timeout", "broken"} and not policy.retry_on_timeouts:
            return None
        if failed.kind == "timeout" and not self._instance_left(call.service, timed_out):
            return None
        delay = backoff_s(policy, retry)
        if failed.retry_after is not None:
            delay = max(delay, failed.retry_after)
        room = ends_at - time.monotonic()
        deadline = deadline_var.get()
        if deadline is not None:
            room = min(room, deadline.remaining_s())
        if delay >= room:
            return None
        if not call.route.budget.try_spend():
            retry_budget_refusals.labels(call.service).inc()
            return None
        upstream_retries.labels(call.service).inc()
        return delay

    def _instance_left(self, service: str, timed_out: AbstractSet[str]) -> bool:
        """Whether the service has a routable instance that has not timed out on this call."""
        return any(i.url not in timed_out for i in self._registry.routable(service))


# The instances a call has tried, or that timed out on it, before its first retry.
_NONE: frozenset[str] = frozenset()
# Headers aiohttp would add to a streamed call on its own.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent")


def _upstream_failure_logged(call: _Call, failure: UpstreamError) -> None:
    """The `upstream_failure` event: a call the gateway gave up on (its ids added by the
    log formatter)."""
    _events.warning(
        "upstream_failure",
        extra={
            "fields": {
                "service": call.service,
                "method": call.method,
                "instance": call.instance,
                "status": call.status,
                "retries": call.retries,
                "error": failure.slug,
                "detail": failure.detail,
            }
        },
    )


def _start_client_try(
    request_trace: RequestTrace, call: _Call, instance: InstanceConfig
) -> ClientTry:
    """The try as the request's trace sees it: a client span, its `traceparent` sent
    upstream."""
    client_try = request_trace.start_try(
        service=call.service,
        method=call.method,
        url=instance.url + call.path,
        resend_count=call.retries,
    )
    call.headers["traceparent"] = client_try.traceparent
    if request_trace.tracestate:
        call.headers["tracestate"] = request_trace.tracestate
    return client_try


def _time_left(ends_at: float, deadline: Deadline | None) -> float:
    """What is left of the call: of its tries' time, and of the request's deadline."""
    left = ends_at - time.monotonic()
    return min(left, deadline.remaining_s()) if deadline is not None else left


def _try_timeout_s(
    service: str, per_try_s: float, ends_at: float, deadline: Deadline | None
) -> tuple[float, bool]:
    """How long this try may take: its per-try timeout, within what is left of the call;
    and whether the request's deadline cut it short."""
    now = time.monotonic()
    timeout_s = min(ends_at - now, per_try_s)
    cut_by_deadline = False
    if deadline is not None:
        remaining = deadline.expires_at - now
        if remaining <= 0:
            raise _deadline_passed(service)
        if remaining < timeout_s:
            timeout_s, cut_by_deadline = remaining, True
    if timeout_s <= 0:
        # The bulkhead's wait took what was left of the service's timeout.
        raise UpstreamTimeout(f"{service} had no time left for another attempt.", service=service)
    return timeout_s, cut_by_deadline


def _send_failure(
    service: str, exc: BaseException, *, connect_s: float, timeout_s: float
) -> _Failure:
    """What aiohttp's failure of one try means, for the client and for the retry policy:
    the one mapping for plain and streamed tries."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return _Failure(
            UpstreamUnavailable(
                f"{service} could not be reached within {connect_s:g} s.", service=service
            ),
            kind="connect",
            cause=exc,
        )
    if isinstance(exc, TimeoutError):
        return _Failure(
            UpstreamTimeout(f"{service} did not answer within {timeout_s:g} s.", service=service),
            kind="timeout",
            cause=exc,
        )
    unreachable = UpstreamUnavailable(
        f"{service} could not be reached ({type(exc).__name__}).", service=service
    )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _Failure(unreachable, kind="connect", cause=exc)
    # The connection broke after the request may have been sent.
    return _Failure(unreachable, kind="broken", cause=exc)


def _status_failure(call: _Call, response: UpstreamResponse) -> _Failure:
    """A 5xx answer, as a failed try."""
    status = response.status
    failure = _FAILURE_BY_STATUS.get(status, UpstreamError)
    return _Failure(
        failure(f"{call.service} answered {status}.", service=call.service),
        kind="status",
        status=status,
        retry_after=retry_after_s(response.headers.get("retry-after")) if status == 503 else None,
        response=response if call.streamed else None,
    )


def _bound_body_reads(answer: aiohttp.ClientResponse, timeout_s: float) -> None:
    """A streamed answer whose body is still arriving: each of its reads waits at most
    `timeout_s` (aiohttp's read timeout, set once the head is in: the head itself was
    bounded as a whole)."""
    connection = answer.connection
    if connection is None or connection.protocol is None or answer.content.is_eof():
        return
    connection.protocol.read_timeout = timeout_s
    connection.protocol.start_timeout()


def _deadline_passed(service: str) -> UpstreamTimeout:
    error = UpstreamTimeout(
        f"The request's deadline passed before {service} answered.", service=service
    )
    error.extra["reason"] = "deadline-exceeded"
    return error

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
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import BaseModel, ValidationError
from yarl import URL

from app.discovery.registry import ServiceRegistry
from app.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from app.observability.access_log import UpstreamCall, current_access_record
from app.observability.metrics import ClientMetrics, retry_budget_refusals, upstream_retries
from app.observability.request_id import current_request_id
from app.observability.tracing import current_trace
from app.settings import UpstreamSettings
from app.store.snapshot import InstanceConfig, ServiceConfig
from app.traffic.breaker import BreakerBoard, CircuitBreaker, CircuitOpen, CircuitState
from app.traffic.bulkhead import Bulkheads
from app.traffic.collapse import RequestCollapser, collapse_key
from app.traffic.deadline import DEADLINE_HEADER, Deadline, current_deadline
from app.traffic.retry import RetryBudget, RetryBudgets, backoff_s, is_repeatable, retry_after_s

M = TypeVar("M", bound=BaseModel)
_events = logging.getLogger("gateway.upstream")

_FAILURE_BY_STATUS: dict[int, type[UpstreamError]] = {
    503: UpstreamUnavailable,
    504: UpstreamTimeout,
}


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class _UpstreamRequest:
    """One logical upstream request, whatever number of attempts it takes."""

    service: str
    config: ServiceConfig
    method: str
    path: str
    params: Mapping[str, str] | None
    data: bytes | AsyncIterable[bytes] | None
    headers: dict[str, str]
    timeout_s: float | None
    # `stream`: the response is handed over open; `attempts` overrides the service's.
    streamed: bool = False
    attempts: int | None = None


@dataclass(slots=True)
class _CallProgress:
    """Where a call has got to: its last try's instance and status, its retries so far."""

    instance: str | None = None
    status: int | None = None
    retries: int = 0


class _AttemptFailed(Exception):
    """One attempt failed; `error` is what the client sees if it is not retried."""

    def __init__(
        self,
        error: UpstreamError,
        *,
        kind: str,
        status: int | None = None,
        retry_after: float | None = None,
        response: UpstreamResponse | None = None,
    ) -> None:
        super().__init__(error.detail)
        self.error = error
        # A streamed call's 5xx: passed through as it is when it is not retried.
        self.response = response
        # connect | timeout | status | broken
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


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
        config = self._registry.service(service)
        outgoing = {"x-request-id": current_request_id()}
        data = None
        if json_body is not None:
            data = orjson.dumps(json_body)
            outgoing["content-type"] = "application/json"
        if headers:
            outgoing.update(headers)
        call = _UpstreamRequest(service, config, method, path, params, data, outgoing, timeout_s)
        if collapse is None:
            collapse = self._settings.collapse_gets and method == "GET" and data is None
        if not collapse or not self._some_circuit_closed(call):
            # Without a closed circuit a call is a half-open circuit's probe or refused at
            # once: the breaker lets one probe through, and nobody queues behind it.
            return await self._call(call)
        key = collapse_key(service, path, params=params, headers=outgoing)
        deadline = current_deadline()
        shared = self.collapser.run(key, lambda: self._call(call))
        if deadline is None:
            return await shared
        try:
            # A follower keeps its own deadline even when the leader's is longer.
            async with asyncio.timeout(max(deadline.remaining_s(), 0.0)):
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
                    headers={"x-request-id": current_request_id()},
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
        outgoing = {"x-request-id": current_request_id()}
        if headers:
            outgoing.update(headers)
        call = _UpstreamRequest(
            service,
            self._registry.service(service),
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

    async def _call(self, call: _UpstreamRequest) -> UpstreamResponse:
        """The call, written into the request's access record; a failure logged."""
        progress = _CallProgress()
        started = time.perf_counter()
        error: str | None = None
        try:
            response = await self._tries(call, progress)
        except UpstreamError as failure:
            error = failure.slug
            _upstream_failure_logged(call, progress, failure)
            raise
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        finally:
            record = current_access_record()
            if record is not None:
                record.add_upstream_call(
                    UpstreamCall(
                        service=call.service,
                        method=call.method,
                        instance=progress.instance,
                        status=progress.status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                        retries=progress.retries,
                        error=error,
                    )
                )
        return response

    async def _tries(self, call: _UpstreamRequest, progress: _CallProgress) -> UpstreamResponse:
        """Attempts until one succeeds or the failure is final."""
        policy = call.config.policy.retries
        budget = self.budgets.budget(call.service, policy)
        budget.record_call()
        per_try_s = _per_try_s(call)
        started_deadline = current_deadline()
        ends_at = (
            started_deadline.expires_at
            if started_deadline is not None
            else time.monotonic() + per_try_s * policy.attempts
        )
        tried: set[str] = set()
        timed_out: set[str] = set()
        retry = 0
        last_failure: _AttemptFailed | None = None
        while True:
            deadline = current_deadline()
            if deadline is not None and deadline.remaining_s() <= 0:
                raise _deadline_passed(call.service)
            try:
                instance, breaker = self._choose(call, tried=tried, excluded=timed_out)
            except CircuitOpen:
                if last_failure is not None:
                    # The failure that opened the last circuit says more than "circuit open".
                    raise last_failure.error from last_failure.__cause__
                raise
            tried.add(instance.url)
            progress.instance = instance.url
            try:
                return await self._attempt(
                    call, instance, breaker, deadline, ends_at, progress=progress
                )
            except _AttemptFailed as failed:
                if failed.kind == "timeout":
                    timed_out.add(instance.url)
                retry += 1
                last_failure = failed
                delay = self._retry_delay(
                    call,
                    failed,
                    retry=retry,
                    repeatable=is_repeatable(call.method, call.headers)
                    and not isinstance(call.data, AsyncIterable),
                    budget=budget,
                    ends_at=ends_at,
                    timed_out=timed_out,
                )
                if delay is None:
                    if failed.response is not None:
                        return failed.response
                    raise failed.error from failed.__cause__
                if failed.response is not None:
                    failed.response.release()
            progress.retries = retry
            await asyncio.sleep(delay)

    def _some_circuit_closed(self, call: _UpstreamRequest) -> bool:
        policy = call.config.policy.breaker
        return any(
            self.breakers.breaker(call.service, instance.url, policy).state is CircuitState.closed
            for instance in self._registry.routable(call.service)
        )

    def _choose(
        self, call: _UpstreamRequest, *, tried: set[str], excluded: set[str]
    ) -> tuple[InstanceConfig, CircuitBreaker]:
        """An instance whose circuit lets the call through, preferring one not tried yet and
        never one in `excluded`."""
        instances = self._registry.routable(call.service)
        if not instances:
            raise UpstreamUnavailable(
                f"{call.service} has no enabled instance.", service=call.service
            )
        policy = call.config.policy.breaker
        if len(instances) == 1:
            # The common case: one instance, nothing to balance between.
            instance = instances[0]
            if instance.url not in excluded:
                breaker = self.breakers.breaker(call.service, instance.url, policy)
                if breaker.try_acquire():
                    return instance, breaker
            raise CircuitOpen(call.service)
        open_for_calls = [
            (instance, breaker)
            for instance in instances
            if instance.url not in excluded
            and (breaker := self.breakers.breaker(call.service, instance.url, policy)).available()
        ]
        balancer = self._registry.balancer(call.service)
        while open_for_calls:
            untried = [pair for pair in open_for_calls if pair[0].url not in tried]
            pool = untried or open_for_calls
            instance = balancer.pick([pair[0] for pair in pool])
            breaker = next(b for i, b in pool if i is instance)
            if breaker.try_acquire():
                return instance, breaker
            open_for_calls = [pair for pair in open_for_calls if pair[0] is not instance]
        raise CircuitOpen(call.service)

    async def _attempt(
        self,
        call: _UpstreamRequest,
        instance: InstanceConfig,
        breaker: CircuitBreaker,
        deadline: Deadline | None,
        ends_at: float,
        *,
        progress: _CallProgress,
    ) -> UpstreamResponse:
        service, policy = call.service, call.config.policy
        per_try_s = _per_try_s(call)
        outcome: bool | None = None
        try:
            bulkhead = self.bulkheads.bulkhead(service, policy.bulkhead)
            max_wait = ends_at - time.monotonic()
            if deadline is not None:
                max_wait = min(max_wait, deadline.remaining_s())
            async with bulkhead.slot(max_wait_s=max_wait):
                # The service's own limit: the per-try timeout, within what is left of its call.
                timeout_s = min(ends_at - time.monotonic(), per_try_s)
                cut_by_deadline = False
                if deadline is not None:
                    remaining = deadline.remaining_s()
                    if remaining <= 0:
                        raise _deadline_passed(service)
                    if remaining < timeout_s:
                        timeout_s, cut_by_deadline = remaining, True
                if timeout_s <= 0:
                    # The bulkhead's wait took what was left of the service's timeout.
                    raise UpstreamTimeout(
                        f"{service} had no time left for another attempt.", service=service
                    )
                headers = dict(call.headers)
                headers[DEADLINE_HEADER] = str(max(int(timeout_s * 1000), 1))
                with self._registry.balancer(service).track(instance):
                    try:
                        response = await self._observed_send(
                            call, instance, headers, timeout_s, progress=progress
                        )
                    except _AttemptFailed as failed:
                        # A timeout only says something about the instance when it was the
                        # service's own; a short client deadline is not the instance's fault.
                        if not (failed.kind == "timeout" and cut_by_deadline):
                            outcome = False
                        raise
                outcome = response.status < 500
                if response.status >= 500:
                    failure = _FAILURE_BY_STATUS.get(response.status, UpstreamError)
                    raise _AttemptFailed(
                        failure(f"{service} answered {response.status}.", service=service),
                        kind="status",
                        status=response.status,
                        retry_after=retry_after_s(response.headers.get("retry-after"))
                        if response.status == 503
                        else None,
                        response=response if call.streamed else None,
                    )
                return response
        finally:
            if outcome is None:
                breaker.release()
            else:
                if outcome:
                    breaker.record_success()
                else:
                    breaker.record_failure()
                self._registry.health.record_call(
                    service, instance.url, ok=outcome, policy=policy.ejection
                )

    async def _observed_send(
        self,
        call: _UpstreamRequest,
        instance: InstanceConfig,
        headers: dict[str, str],
        timeout_s: float,
        *,
        progress: _CallProgress,
    ) -> UpstreamResponse:
        """One try, as the request's trace (a client span, its `traceparent` sent upstream)
        and `http_client_request_duration_seconds` see it."""
        request_trace = current_trace()
        client_try = None
        if request_trace is not None:
            client_try = request_trace.start_try(
                service=call.service,
                method=call.method,
                url=instance.url + call.path,
                resend_count=progress.retries,
            )
            headers["traceparent"] = client_try.traceparent
            if request_trace.tracestate:
                headers["tracestate"] = request_trace.tracestate
        status: int | None = None
        error_type: str | None = "cancelled"
        started = time.perf_counter()
        try:
            response = await self._send(call, instance, headers, timeout_s)
            status, error_type = response.status, None
            return response
        except _AttemptFailed as failed:
            error_type = failed.kind
            raise
        finally:
            progress.status = status
            self.metrics.observe(
                service=call.service,
                instance=instance.url,
                method=call.method,
                status=status,
                error_type=error_type or "",
                seconds=time.perf_counter() - started,
            )
            if client_try is not None:
                client_try.end(status=status, error_type=error_type)

    async def _send(
        self,
        call: _UpstreamRequest,
        instance: InstanceConfig,
        headers: dict[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        service = call.service
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=min(self._settings.connect_timeout_s, timeout_s)
        )
        if call.streamed:
            return await self._send_streamed(call, instance, headers, timeout_s)
        try:
            async with self._session.request(
                call.method,
                instance.url + call.path,
                params=call.params,
                data=call.data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise _AttemptFailed(
                UpstreamUnavailable(
                    f"{service} could not be reached within {timeout.connect:g} s.",
                    service=service,
                ),
                kind="connect",
            ) from exc
        except TimeoutError as exc:
            raise _AttemptFailed(
                UpstreamTimeout(
                    f"{service} did not answer within {timeout_s:g} s.", service=service
                ),
                kind="timeout",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise _AttemptFailed(
                UpstreamUnavailable(
                    f"{service} could not be reached ({type(exc).__name__}).", service=service
                ),
                kind="connect",
            ) from exc
        except aiohttp.ClientError as exc:
            # The connection broke after the request may have been sent.
            raise _AttemptFailed(
                UpstreamUnavailable(
                    f"{service} could not be reached ({type(exc).__name__}).", service=service
                ),
                kind="broken",
            ) from exc
        return UpstreamResponse(service, response.status, response.headers, body)

    async def _send_streamed(
        self,
        call: _UpstreamRequest,
        instance: InstanceConfig,
        headers: dict[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """One attempt whose response is handed over open: `timeout_s` bounds the wait for
        its head (a streamed upload: the wait for each read instead, as the body is still
        arriving from the client), and then each read of its body."""
        service = call.service
        connect_s = min(self._settings.connect_timeout_s, timeout_s)
        uploading = isinstance(call.data, AsyncIterable)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_s, sock_connect=connect_s, sock_read=timeout_s
        )
        try:
            async with asyncio.timeout(None if uploading else timeout_s):
                response = await self._session.request(
                    call.method,
                    # As given: already encoded, never normalized again (yarl would resolve
                    # an encoded `..` against the service's paths).
                    URL(instance.url + call.path, encoded=True),
                    params=call.params,
                    data=call.data,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                    auto_decompress=False,
                    # Only what the caller asked for: no Accept-Encoding the client did not send.
                    skip_auto_headers=_NO_AUTO_HEADERS,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise _AttemptFailed(
                UpstreamUnavailable(
                    f"{service} could not be reached within {connect_s:g} s.", service=service
                ),
                kind="connect",
            ) from exc
        except TimeoutError as exc:
            raise _AttemptFailed(
                UpstreamTimeout(
                    f"{service} did not answer within {timeout_s:g} s.", service=service
                ),
                kind="timeout",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise _AttemptFailed(
                UpstreamUnavailable(
                    f"{service} could not be reached ({type(exc).__name__}).", service=service
                ),
                kind="connect",
            ) from exc
        except aiohttp.ClientError as exc:
            raise _AttemptFailed(
                UpstreamUnavailable(
                    f"{service} could not be reached ({type(exc).__name__}).", service=service
                ),
                kind="broken",
            ) from exc
        return UpstreamResponse(service, response.status, response.headers, b"", stream=response)

    def _retry_delay(
        self,
        call: _UpstreamRequest,
        failed: _AttemptFailed,
        *,
        retry: int,
        repeatable: bool,
        budget: RetryBudget,
        ends_at: float,
        timed_out: set[str],
    ) -> float | None:
        """Seconds to wait before trying again, or None when this failure is final."""
        policy = call.config.policy.retries
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
        deadline = current_deadline()
        if deadline is not None:
            room = min(room, deadline.remaining_s())
        if delay >= room:
            return None
        if not budget.try_spend():
            retry_budget_refusals.labels(call.service).inc()
            return None
        upstream_retries.labels(call.service).inc()
        return delay

    def _instance_left(self, service: str, timed_out: set[str]) -> bool:
        """Whether the service has a routable instance that has not timed out on this call."""
        return any(i.url not in timed_out for i in self._registry.routable(service))


# Headers aiohttp would add to a streamed call on its own.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent")


def _per_try_s(call: "_UpstreamRequest") -> float:
    """How long one attempt may take: the call's own bound, else the policy's per-try
    timeout, else the service's timeout."""
    if call.timeout_s is not None:
        return call.timeout_s
    per_try_ms = call.config.policy.retries.per_try_timeout_ms
    return per_try_ms / 1000 if per_try_ms is not None else call.config.timeout_s


def _upstream_failure_logged(
    call: _UpstreamRequest, progress: _CallProgress, failure: UpstreamError
) -> None:
    """The `upstream_failure` event: a call the gateway gave up on (its ids added by the
    log formatter)."""
    _events.warning(
        "upstream_failure",
        extra={
            "fields": {
                "service": call.service,
                "method": call.method,
                "instance": progress.instance,
                "status": progress.status,
                "retries": progress.retries,
                "error": failure.slug,
                "detail": failure.detail,
            }
        },
    )


def _deadline_passed(service: str) -> UpstreamTimeout:
    error = UpstreamTimeout(
        f"The request's deadline passed before {service} answered.", service=service
    )
    error.extra["reason"] = "deadline-exceeded"
    return error

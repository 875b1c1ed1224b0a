"""Events: a breaker's state change and an instance's ejection are log records carrying the
ids of the request they happened in, and move their metrics."""

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from app.discovery.checks import HealthTable
from app.observability.request_id import request_id_var
from app.observability.tracing import Tracing, trace_var
from app.traffic.breaker import CircuitBreaker, CircuitState
from app.traffic.service_policy import BreakerPolicy, EjectionPolicy
from tests.observability.conftest import CapturedLog

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture
def in_a_request() -> Iterator[str]:
    """Code running as part of a request: its request id and trace set, as the edge sets
    them."""
    request_token = request_id_var.set("evented-request")
    trace = Tracing().start_request(method="GET", traceparent=TRACEPARENT.encode(), tracestate=None)
    trace_token = trace_var.set(trace)
    try:
        yield "evented-request"
    finally:
        trace_var.reset(trace_token)
        request_id_var.reset(request_token)


def test_a_breaker_opening_is_an_event_of_the_request_that_opened_it(
    captured_log: CapturedLog, in_a_request: str
) -> None:
    breaker = CircuitBreaker(
        BreakerPolicy(consecutive_failures=2, cool_down_ms=60_000),
        service="news",
        url="http://news-events:1",
    )
    labels = {"service": "news", "instance": "http://news-events:1"}
    assert REGISTRY.get_sample_value("gateway_breaker_state", labels) == 0
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.state is CircuitState.open
    (event,) = [line for line in captured_log.lines() if line["event"] == "breaker_state"]
    assert (event["level"], event["logger"]) == ("warning", "gateway.breaker")
    assert (event["service"], event["instance"]) == ("news", "http://news-events:1")
    assert (event["from"], event["to"], event["consecutive_failures"]) == ("closed", "open", 2)
    assert (event["request_id"], event["trace_id"]) == (in_a_request, TRACE_ID)
    assert REGISTRY.get_sample_value("gateway_breaker_state", labels) == 2
    assert (
        REGISTRY.get_sample_value("gateway_breaker_transitions_total", {**labels, "state": "open"})
        == 1
    )


def test_an_ejection_is_an_event_of_the_request_whose_call_failed(
    captured_log: CapturedLog, in_a_request: str
) -> None:
    table = HealthTable()
    labels = {"service": "bots", "instance": "http://bots-events:1", "cause": "passive"}
    before = REGISTRY.get_sample_value("gateway_instance_ejections_total", labels) or 0
    policy = EjectionPolicy(consecutive_failures=3, ejection_ms=5_000)
    for _ in range(3):
        table.record_call("bots", "http://bots-events:1", ok=False, policy=policy)
    assert not table.in_rotation("bots", "http://bots-events:1")
    (event,) = [line for line in captured_log.lines() if line["event"] == "instance_ejected"]
    assert (event["service"], event["instance"], event["for_s"]) == (
        "bots",
        "http://bots-events:1",
        5.0,
    )
    assert (event["request_id"], event["trace_id"]) == (in_a_request, TRACE_ID)
    assert REGISTRY.get_sample_value("gateway_instance_ejections_total", labels) == before + 1

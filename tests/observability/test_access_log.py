"""The access record: one JSON line per request with what an operator needs, and never a
secret the client sent."""

import asyncio
import io
import json
import logging

import pytest
import websockets
from websockets.asyncio.client import connect

from app.observability.access_log import AccessRecord, write_access_record
from app.observability.logging import (
    ACCESS_FLUSH_S,
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
    redact,
)
from app.settings import RateLimitSettings, Settings
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import dev_token
from tests.fixtures.platform_control import platform_control
from tests.observability.conftest import CapturedLog

ADMIN = {"Authorization": "Bearer test-admin-token"}
IDENTITY = {"Accept-Encoding": "identity"}


async def test_a_partner_call_is_one_record_naming_route_principal_limits_and_upstream(
    settings: Settings, captured_log: CapturedLog
) -> None:
    async with running_gateway(settings.model_copy(update={"access_log": True})) as gw:
        partner = await create_partner(gw.client)
        response = await gw.client.get(
            "/partner/v1/quotes",
            params={"symbols": "AAPL"},
            headers={**partner.headers, **IDENTITY, "X-Request-ID": "partner-record"},
        )
        assert response.status_code == 200
        body = json.dumps({"name": "plan-recorded", "scopes": ["quotes:read"]}).encode()
        created = await gw.client.post(
            "/admin/v1/plans",
            content=body,
            headers={
                **ADMIN,
                **IDENTITY,
                "Content-Type": "application/json",
                "X-Request-ID": "admin-record",
            },
        )
        assert created.status_code == 201, created.text
    line = captured_log.access_of("partner-record")
    assert line["logger"] == "gateway.access" and line["event"] == "access"
    assert line["frontend"] == "partner"
    assert line["route"] == "/partner/v1/quotes"
    assert "path" not in line
    assert (line["method"], line["status"]) == ("GET", 200)
    assert line["principal"] == f"consumer:{partner.consumer}"
    assert line["key_prefix"] == partner.prefix
    assert line["client"] == "127.0.0.1"
    # The partner's plan sets no rate: admitted with no limit checked.
    assert line["rate_limit"] == "unlimited"
    assert line["bytes_in"] == 0
    assert line["bytes_out"] == len(response.content)
    assert len(line["trace_id"]) == 32
    assert line["duration_ms"] >= 0
    (call,) = line["upstream"]
    assert (call["service"], call["method"], call["status"], call["retries"]) == (
        "market-data",
        "GET",
        200,
        0,
    )
    assert call["instance"].startswith("http://127.0.0.1:")
    assert call["duration_ms"] <= line["duration_ms"]

    admin = captured_log.access_of("admin-record")
    assert (admin["frontend"], admin["route"], admin["status"]) == ("admin", "/admin/v1/plans", 201)
    assert admin["bytes_in"] == len(body)
    assert admin["bytes_out"] == len(created.content)
    assert admin["upstream"] == []


async def test_the_route_is_a_template_and_an_unmatched_path_keeps_its_path_only(
    settings: Settings, captured_log: CapturedLog
) -> None:
    async with running_gateway(settings.model_copy(update={"access_log": True})) as gw:
        partner = await create_partner(gw.client)
        found = await gw.client.get(
            f"/admin/v1/consumers/{partner.consumer_id}",
            headers={**ADMIN, "X-Request-ID": "templated"},
        )
        assert found.status_code == 200
        missing = await gw.client.get(
            "/web/v1/no-such-thing/42?secret=xyz", headers={"X-Request-ID": "unmatched"}
        )
        assert missing.status_code == 404
    assert captured_log.access_of("templated")["route"] == "/admin/v1/consumers/{consumer_id}"
    unmatched = captured_log.access_of("unmatched")
    assert (unmatched["route"], unmatched["path"]) == (None, "/web/v1/no-such-thing/42")
    assert "xyz" not in captured_log.text


async def test_a_rate_limit_refusal_names_the_limit_in_the_record(
    settings: Settings, captured_log: CapturedLog
) -> None:
    limits = RateLimitSettings(anonymous_limit=1, anonymous_period_s=600)
    tight = settings.model_copy(update={"access_log": True, "rate_limit": limits})
    async with running_gateway(tight) as gw:
        for number in range(2):
            await gw.client.get(
                "/partner/v1/quotes",
                params={"symbols": "AAPL"},
                headers={"X-Request-ID": f"anonymous-{number}"},
            )
    first, refused = captured_log.access_of("anonymous-0"), captured_log.access_of("anonymous-1")
    assert first["status"] == 401 and first["rate_limit"] == "admitted"
    assert refused["status"] == 429
    assert refused["rate_limit"] == "refused"
    assert refused["rate_limit_policy"]
    assert refused["principal"] is None


async def test_no_secret_a_client_sent_reaches_the_logs(
    settings: Settings, platform: Platform, captured_log: CapturedLog
) -> None:
    """Every credential the test sends, valid or not, is searched for in everything the
    gateway's loggers wrote, events included (an upstream failure, refused credentials)."""
    token = await dev_token(platform.urls["identity"][0], username="alice")
    secrets = {
        "bearer token": token,
        "bad bearer token": "not-a-real-token-7f3a9c2e41",
        "cookie": "cookie-value-b84d0e66f1",
        "password": "hunter2-c0ffee-9a8b",
        "query api key": "query-key-5e1f77aa03",
        "admin token": "test-admin-token",
        "wrong admin token": "wrong-admin-d41d8cd9",
    }
    logged = settings.model_copy(update={"access_log": True, "log_level": "debug"})
    async with platform_control(platform) as control, running_gateway(logged) as gw:
        partner = await create_partner(gw.client)
        secrets["api key"] = partner.key
        secrets["wrong api key"] = partner.prefix + "_" + "0" * 40
        client = gw.client
        await client.get("/web/v1/dashboard", headers={"Authorization": f"Bearer {token}"})
        await client.get(
            "/web/v1/dashboard", headers={"Authorization": f"Bearer {secrets['bad bearer token']}"}
        )
        await client.get(
            "/web/v1/dashboard", headers={"Cookie": f"stockbot_session={secrets['cookie']}"}
        )
        await client.get(
            "/partner/v1/quotes",
            params={"symbols": "AAPL", "api_key": secrets["query api key"]},
            headers=partner.headers,
        )
        await client.get(
            "/partner/v1/quotes",
            params={"symbols": "AAPL"},
            headers={"X-API-Key": secrets["wrong api key"]},
        )
        await client.post(
            "/auth/login",
            data={"username": "alice", "password": secrets["password"]},
        )
        await client.get(
            "/admin/v1/consumers",
            headers={"Authorization": f"Bearer {secrets['wrong admin token']}"},
        )
        await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        # An upstream failure is an event of the request; it names no credential either.
        await control.fault("market-data", error_rate=1.0, error_status=500, paths=["/quotes"])
        failed = await client.get(
            "/partner/v1/quotes", params={"symbols": "MSFT"}, headers=partner.headers
        )
        assert failed.status_code == 502
    text = captured_log.text
    assert len(captured_log.access()) >= 9
    assert any(line["event"] == "upstream_failure" for line in captured_log.lines())
    for what, secret in secrets.items():
        assert secret not in text, f"the {what} reached the logs"
    assert "authorization" not in text.lower()


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("sent authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("Cookie: stockbot_session=zzz-cookie", "zzz-cookie"),
        ("login failed: password=hunter22 for alice", "hunter22"),
        ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
        ("X-API-Key: sk_live_abcdef123456", "sk_live_abcdef123456"),
        ("got token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl here", "c2lnbmF0dXJl"),
        ("upstream said bearer QWxhZGRpbjpvcGVu", "QWxhZGRpbjpvcGVu"),
    ],
)
def test_free_text_is_scrubbed_of_credentials(message: str, secret: str) -> None:
    assert secret not in redact(message)
    assert secret not in JsonFormatter().format(_record(message))
    assert secret not in ConsoleFormatter().format(_record(message))


def test_the_console_format_is_one_readable_line() -> None:
    record = _record("upstream_failure")
    record.fields = {"service": "market-data", "retries": 2, "instance": None}
    line = ConsoleFormatter().format(record)
    assert "\n" not in line
    assert "WARNING gateway.test upstream_failure service=market-data retries=2" in line
    assert "instance" not in line
    document = json.loads(JsonFormatter().format(record))
    assert (document["event"], document["service"], document["retries"]) == (
        "upstream_failure",
        "market-data",
        2,
    )
    assert document["level"] == "warning" and document["ts"].endswith("Z")


def test_the_access_line_skips_logging_only_when_nothing_else_listens() -> None:
    """With the gateway's own JSON handler alone on its logger, an access line goes straight
    to its stream, the same document the formatter writes; with any other handler there it
    goes through `logging`, so that handler sees it too."""
    configure_logging("info", "json")
    gateway = logging.getLogger("gateway")
    (handler,) = [h for h in gateway.handlers if h.get_name() == "gateway-stderr"]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    others = [h for h in gateway.handlers if h is not handler]
    for other in others:
        gateway.removeHandler(other)
    try:
        record = AccessRecord(request_id="direct", method="GET", path="/x", client="10.0.0.1")
        record.set_cache_status("hit")
        write_access_record(record, principal=None, key_prefix=None, duration_s=0.002)
        (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert (line["logger"], line["event"], line["level"]) == (
            "gateway.access",
            "access",
            "info",
        )
        assert (line["request_id"], line["path"], line["cache"]) == ("direct", "/x", "hit")
        assert line["ts"].endswith("Z") and line["duration_ms"] == 2.0

        listening = CapturedLog()
        gateway.addHandler(listening.handler)
        try:
            write_access_record(record, principal=None, key_prefix=None, duration_s=0.001)
        finally:
            gateway.removeHandler(listening.handler)
        assert listening.access_of("direct")["cache"] == "hit"
        assert len(stream.getvalue().splitlines()) == 2
    finally:
        handler.setStream(previous)  # type: ignore[arg-type]
        for other in others:
            gateway.addHandler(other)


async def test_in_the_event_loop_access_lines_reach_the_file_together_soon_after() -> None:
    """Behind a byte buffer (stderr), lines written while serving are flushed together within
    ACCESS_FLUSH_S rather than one write each; none is lost or reordered."""
    configure_logging("info", "json")
    gateway = logging.getLogger("gateway")
    (handler,) = [h for h in gateway.handlers if h.get_name() == "gateway-stderr"]
    assert isinstance(handler, logging.StreamHandler)
    file = io.BytesIO()
    stream = io.TextIOWrapper(file, encoding="utf-8", write_through=False)
    previous = handler.setStream(stream)
    others = [h for h in gateway.handlers if h is not handler]
    for other in others:
        gateway.removeHandler(other)
    try:
        for number in range(3):
            record = AccessRecord(
                request_id=f"batched-{number}", method="GET", path="/x", client="10.0.0.1"
            )
            write_access_record(record, principal=None, key_prefix=None, duration_s=0.001)
        await asyncio.sleep(ACCESS_FLUSH_S * 4)
        lines = [json.loads(text) for text in file.getvalue().decode().splitlines()]
        assert [line["request_id"] for line in lines] == ["batched-0", "batched-1", "batched-2"]
    finally:
        handler.setStream(previous)  # type: ignore[arg-type]
        for other in others:
            gateway.addHandler(other)


async def test_a_streams_record_counts_the_events_written_past_asgi(
    settings: Settings, platform: Platform, captured_log: CapturedLog
) -> None:
    """Quote events go to an SSE client's connection directly (`app.streams.connection`):
    the stream's access record still counts them."""
    token = await dev_token(platform.urls["identity"][0], username="alice")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "text/event-stream",
        "X-Request-ID": "stream-record",
    }
    received = b""
    async with (
        running_gateway(settings.model_copy(update={"access_log": True})) as gw,
        gw.client.stream(
            "GET", "/web/v1/stream/quotes", params={"symbols": "AAPL"}, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        async with asyncio.timeout(15):
            async for part in response.aiter_raw():
                received += part
                if received.count(b"event: quote") >= 3:
                    break
    # Written when the stream saw the client go, before the gateway stopped.
    line = captured_log.access_of("stream-record")
    assert line["route"] == "/web/v1/stream/quotes" and line["status"] == 200
    # At least what the client read: the retry line (through ASGI) and the quotes (direct).
    assert line["bytes_out"] >= len(received) > len(b"retry: 2000\n\n") + 200


async def test_a_websocket_session_is_one_record_when_it_ends(
    settings: Settings, platform: Platform, captured_log: CapturedLog
) -> None:
    token = await dev_token(platform.urls["identity"][0], username="alice")
    subscribe = '{"type": "subscribe", "symbols": ["AAPL"]}'
    received: list[str] = []
    async with running_gateway(settings.model_copy(update={"access_log": True})) as gw:
        url = gw.url.replace("http://", "ws://") + "/web/v1/ws/quotes"
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "socket-record"}
        async with connect(url, additional_headers=headers) as socket:
            await socket.send(subscribe)
            async with asyncio.timeout(10):
                while not any('"type":"quote"' in text for text in received):
                    received.append(str(await socket.recv()))
        with pytest.raises(websockets.InvalidStatus):
            async with connect(url, additional_headers={"X-Request-ID": "socket-refused"}):
                pass

    line = captured_log.access_of("socket-record")
    assert (line["route"], line["method"], line["status"]) == ("/web/v1/ws/quotes", "GET", 101)
    assert line["principal"] == "alice"
    assert line["bytes_in"] == len(subscribe)
    assert line["bytes_out"] >= sum(len(text.encode()) for text in received)
    refused = captured_log.access_of("socket-refused")
    assert (refused["status"], refused["bytes_out"]) == (401, 0)

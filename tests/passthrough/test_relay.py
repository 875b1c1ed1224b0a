"""How the handler relays an upstream's answer in ASGI messages: a small answer that
arrived whole is one body message; one still arriving is sent chunk by chunk."""

import asyncio
from types import SimpleNamespace
from unittest import mock

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.types import Message

from app.passthrough.compiled import CompiledRoute
from app.passthrough.handler import PassthroughHandler
from app.passthrough.matcher import MatchedPath
from app.settings import Settings
from app.store.route_declarations import RouteDeclaration
from app.store.snapshot import RouteConfig
from app.upstreams.caller import UpstreamResponse

_ROUTE = RouteConfig(
    route_id=1,
    declaration=RouteDeclaration.model_validate(
        {"name": "quotes", "match": {"path": "/quotes"}, "upstream": {"service": "echo"}}
    ),
)


def _answer(content: aiohttp.StreamReader) -> UpstreamResponse:
    stream = SimpleNamespace(
        raw_headers=((b"Content-Type", b"application/json"), (b"Content-Length", b"11")),
        content=content,
        release=lambda: None,
    )
    return UpstreamResponse("echo", 200, CIMultiDictProxy(CIMultiDict()), b"", stream=stream)  # type: ignore[arg-type]


async def _relay(content: aiohttp.StreamReader, sent: list[Message]) -> None:
    async def send(message: Message) -> None:
        sent.append(message)

    route = CompiledRoute.of(_ROUTE, prefix="/api/")
    await PassthroughHandler(Settings())._relay(
        None,  # type: ignore[arg-type]  # only a redirect asks the state
        {"type": "http", "headers": []},
        send,
        route,
        MatchedPath(_ROUTE, {}, ""),
        _answer(content),
        wants_csv=False,
    )


def _reader() -> aiohttp.StreamReader:
    return aiohttp.StreamReader(
        mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop()
    )


async def test_an_answer_that_arrived_whole_is_one_body_message() -> None:
    content = _reader()
    content.feed_data(b'{"a": true}')
    content.feed_eof()
    sent: list[Message] = []
    await _relay(content, sent)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1] == {"type": "http.response.body", "body": b'{"a": true}', "more_body": False}
    assert (b"content-length", b"11") in sent[0]["headers"]


async def test_an_answer_still_arriving_is_sent_as_it_comes() -> None:
    content = _reader()
    content.feed_data(b'{"a": ')
    sent: list[Message] = []

    async def finish() -> None:
        await asyncio.sleep(0.05)
        content.feed_data(b"true}")
        content.feed_eof()

    await asyncio.gather(_relay(content, sent), finish())
    bodies = [(m["body"], m.get("more_body", False)) for m in sent[1:]]
    assert b"".join(body for body, _ in bodies) == b'{"a": true}'
    assert bodies[0] == (b'{"a": ', True)
    assert bodies[-1][1] is False

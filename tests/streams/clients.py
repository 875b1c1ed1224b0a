"""Stream clients for the tests: an SSE reader over httpx, the backend's subscription counts."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from backends.launcher import Platform


@dataclass
class Event:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SseReader:
    """Events (and comments) from an open `text/event-stream` response."""

    response: httpx.Response
    lines: AsyncIterator[str] = field(init=False)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    ended: bool = False

    def __post_init__(self) -> None:
        self.lines = self.response.aiter_lines()

    async def next_event(self, timeout_s: float = 5.0) -> Event:
        """The next event; TimeoutError after `timeout_s`, EOFError when the stream ends."""
        async with asyncio.timeout(timeout_s):
            fields: dict[str, str] = {}
            while True:
                try:
                    line = await anext(self.lines)
                except StopAsyncIteration:
                    self.ended = True
                    raise EOFError("the stream ended") from None
                if line == "":
                    if "data" in fields:
                        return Event(
                            event=fields.get("event", "message"),
                            data=orjson.loads(fields["data"]),
                            id=fields.get("id"),
                        )
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry":
                    self.retry = int(value)
                else:
                    fields[name] = value

    async def quotes(self, count: int, timeout_s: float = 10.0) -> list[Event]:
        """The next `count` quote events (status events are skipped)."""
        found: list[Event] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < count:
            event = await self.next_event(max(deadline - time.monotonic(), 0.01))
            if event.event == "quote":
                found.append(event)
        return found

    async def until(self, event: str, timeout_s: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.next_event(max(deadline - time.monotonic(), 0.01))
            if found.event == event:
                return found


@asynccontextmanager
async def sse(client: httpx.AsyncClient, path: str, **headers: str) -> AsyncIterator[SseReader]:
    async with client.stream(
        "GET", path, headers={"accept": "text/event-stream", **headers}
    ) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        yield SseReader(response)


async def upstream_subscriptions(platform: Platform) -> dict[str, dict[str, int]]:
    """The market-data stream's counts summed over its instances: `active` subscribers per
    symbol, `subscribes` since the last reset."""
    total: dict[str, dict[str, int]] = {"active": {}, "subscribes": {}}
    async with httpx.AsyncClient(timeout=5) as client:
        for url in platform.urls["market-data"]:
            counts = (await client.get(f"{url}/stream/subscriptions")).json()
            for kind in ("active", "subscribes"):
                for symbol, count in counts[kind].items():
                    total[kind][symbol] = total[kind].get(symbol, 0) + count
    return total


async def upstream_outage(platform: Platform, seconds: float) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for url in platform.urls["market-data"]:
            response = await client.post(f"{url}/stream/outage", json={"seconds": seconds})
            assert response.status_code == 204, response.text


async def eventually(check: Any, timeout_s: float = 5.0) -> None:
    """Poll the async `check` until it returns true."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.1)

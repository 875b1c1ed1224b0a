"""Typed client of the news service."""

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from app.upstreams.caller import UpstreamCaller

SERVICE = "news"


class Article(BaseModel):
    article_id: str
    symbols: list[str]
    headline: str
    source: str
    url: str
    summary: str
    published_at: datetime


class _Articles(BaseModel):
    articles: list[Article]


class NewsClient:
    def __init__(self, caller: UpstreamCaller) -> None:
        self._caller = caller

    async def for_symbols(self, symbols: Sequence[str], *, limit: int = 10) -> list[Article]:
        params = {"symbols": ",".join(symbols), "limit": str(limit)}
        return (
            await self._caller.fetch(SERVICE, "GET", "/news", _Articles, params=params)
        ).articles

    async def latest(self, *, limit: int = 10) -> list[Article]:
        params = {"limit": str(limit)}
        found = await self._caller.fetch(SERVICE, "GET", "/news/latest", _Articles, params=params)
        return found.articles

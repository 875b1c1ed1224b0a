"""News service: latest market news, optionally filtered by symbol."""

from typing import Annotated

from fastapi import FastAPI, Query
from pydantic import BaseModel

from backends.clock import current_step
from backends.news_feed import Article, NewsFeed
from backends.price_walk import PriceWalk
from backends.service_app import create_service_app, split_symbols

SERVICE_NAME = "news"
MAX_SYMBOLS_PER_REQUEST = 50

ArticleLimit = Annotated[int, Query(ge=1, le=50)]


class ArticleList(BaseModel):
    articles: list[Article]


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The news ASGI app; the feed is a function of the seed and the clock."""
    app = create_service_app(SERVICE_NAME, instance)
    feed = NewsFeed(PriceWalk(seed))

    @app.get("/news", response_model=ArticleList)
    async def get_news(symbols: str = "", limit: ArticleLimit = 10) -> ArticleList:
        """Articles mentioning any of the given symbols (all articles if none), newest first."""
        wanted = frozenset(split_symbols(symbols, max_count=MAX_SYMBOLS_PER_REQUEST))
        return ArticleList(articles=feed.latest(current_step(), limit, wanted))

    @app.get("/news/latest", response_model=ArticleList)
    async def get_latest_news(limit: ArticleLimit = 10) -> ArticleList:
        """The most recent articles across the market, newest first."""
        return ArticleList(articles=feed.latest(current_step(), limit))

    return app

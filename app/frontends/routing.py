"""The router each frontend version is built on: it owns its path prefix.

FastAPI keeps included routers nested and finds a request's route by asking each included
router in turn, which scans its routes, twice over for the one that matches. A frontend
router that knows its prefix answers "no match" for any other path at once, so a partner
request never walks the web and mobile routes.
"""

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class FrontendRouter(APIRouter):
    """An `APIRouter` for the routes under one prefix, e.g. `/partner/v1`."""

    def __init__(self, *, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix=prefix, **kwargs)
        self._under_prefix = prefix + "/"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not scope["path"].startswith(self._under_prefix):
            return Match.NONE, {}
        return super().matches(scope)

"""Partial failure as data: a view's sections either hold a value or name their failure.

Composition code runs every upstream call through `settle` (a required section) or
`settle_optional` (an optional one), so one failing call never cancels its siblings; then it
takes each result as `required` (its failure becomes the response's 502/503/504) or `optional`
(its failure becomes a null section listed in `degraded`).

A required section waits as long as the request's deadline lets it. An optional one waits at
most its budget (`resilience.optional_section_ms`, counted from when its call starts), well
inside the deadline: a slow news service costs the dashboard that budget, never the whole
deadline. The call it cuts short is cancelled; an identical call shared with other requests
(`app.traffic.collapse`) runs on to its own timeout, so the breaker still hears how it ended.
"""

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from app.errors import GatewayError
from app.traffic.deadline import DEFAULT_OPTIONAL_S, current_deadline

T = TypeVar("T")


class SectionLate(GatewayError):
    """An optional section did not arrive within its budget; only ever named in `degraded`."""

    status, slug, title = 504, "section-late", "Section late"


@dataclass(frozen=True, slots=True)
class Failed:
    error: GatewayError


async def settle(call: Awaitable[T]) -> T | Failed:
    """Await `call` for a required section, turning a gateway error into a `Failed` value."""
    try:
        return await call
    except GatewayError as error:
        return Failed(error)


async def settle_optional(call: Awaitable[T]) -> T | Failed:
    """Await `call` for an optional section: at most its budget, then it is `Failed`."""
    # The edge gives every request's deadline its optional budget (settings).
    deadline = current_deadline()
    budget_s = deadline.optional_s if deadline is not None else DEFAULT_OPTIONAL_S
    try:
        async with asyncio.timeout(budget_s):
            return await call
    except TimeoutError:
        return Failed(SectionLate(f"The section took longer than its {budget_s:g} s budget."))
    except GatewayError as error:
        return Failed(error)


class Sections:
    """Collects the names of the sections a view had to leave out."""

    def __init__(self) -> None:
        self.degraded: list[str] = []

    def optional(self, name: str, result: T | Failed) -> T | None:
        if isinstance(result, Failed):
            self.degraded.append(name)
            return None
        return result

    @staticmethod
    def required(result: T | Failed) -> T:
        if isinstance(result, Failed):
            raise result.error
        return result

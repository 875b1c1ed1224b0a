"""Partial failure as data: a view's sections either hold a value or name their failure.

Composition code runs every upstream call through `settle`, so one failing call never
cancels its siblings; then it takes each result as `required` (its failure becomes the
response's 502/503/504) or `optional` (its failure becomes a null section listed in
`degraded`).
"""

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from app.errors import GatewayError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Failed:
    error: GatewayError


async def settle(call: Awaitable[T]) -> T | Failed:
    """Await `call`, turning a gateway error into a `Failed` value."""
    try:
        return await call
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

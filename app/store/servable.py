"""What the hot path can serve: the range of every stored value the snapshot hands it.

The admin API accepts only values inside these bounds, but a row can reach the database
around it (SQL by hand, a restored backup, an older gateway's rules). The snapshot loader
checks each row with these functions and refuses the row that fails (`Unservable`), so one
bad row never reaches the limiters that would fail on it.
"""

import math
from datetime import datetime

# The longest window a limit counts over: a day.
MAX_WINDOW_S = 86_400
# The slowest plan rate: one request a day.
MIN_RATE_PER_SECOND = 1 / MAX_WINDOW_S
# The most requests one limit admits in its window, or at once.
MAX_REQUESTS = 10_000_000
MAX_IN_FLIGHT = 1_000_000
MAX_TIMEOUT_MS = 600_000
# What a rate limit rule may count by; `app.policy.admission` enforces each of them.
RULE_KEYS = frozenset({"consumer", "plan", "user", "address", "route"})


class Unservable(ValueError):
    """A stored value the hot path cannot serve; the row holding it is refused."""


def whole(value: object, *, field: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Unservable(f"{field} is not an integer: {value!r}")
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise Unservable(f"{field} must be at least {low}{upper}, not {value}")
    return value


def optional_whole(value: object, *, field: str, low: int, high: int | None = None) -> int | None:
    return None if value is None else whole(value, field=field, low=low, high=high)


def real(value: object, *, field: str, above: float, high: float) -> float:
    """A finite number greater than `above` and at most `high`."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Unservable(f"{field} is not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number) or not above < number <= high:
        raise Unservable(f"{field} must be above {above:g} and at most {high:g}, not {value!r}")
    return number


def rate_per_second(value: object) -> float | None:
    """A plan's sustained rate: at least one request a day."""
    if value is None:
        return None
    rate = real(value, field="rate_per_second", above=0, high=MAX_REQUESTS)
    if rate < MIN_RATE_PER_SECOND:
        raise Unservable(
            f"rate_per_second must be at least {MIN_RATE_PER_SECOND:.3g} (one a day), not {value!r}"
        )
    return rate


def text(value: object, *, field: str) -> str:
    if not isinstance(value, str):
        raise Unservable(f"{field} is not text: {value!r}")
    return value


def optional_text(value: object, *, field: str) -> str | None:
    return None if value is None else text(value, field=field)


def texts(value: object, *, field: str) -> tuple[str, ...]:
    """A JSON list of strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unservable(f"{field} is not a list of strings: {value!r}")
    return tuple(value)


def flag(value: object, *, field: str) -> bool:
    if not isinstance(value, bool):
        raise Unservable(f"{field} is not true or false: {value!r}")
    return value


def optional_moment(value: object, *, field: str) -> datetime | None:
    if value is not None and not isinstance(value, datetime):
        raise Unservable(f"{field} is not a timestamp: {value!r}")
    return value


def one_of(value: object, *, field: str, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise Unservable(f"{field} must be one of {', '.join(sorted(allowed))}, not {value!r}")
    return value

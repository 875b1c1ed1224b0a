"""Simulation time: the market advances one step per wall-clock second (UTC)."""

import time
from datetime import UTC, datetime

DAY_SECONDS = 86_400


def current_step() -> int:
    """The current simulation step, i.e. whole seconds since the Unix epoch."""
    return int(time.time())


def day_start(step: int) -> int:
    """The step at 00:00:00 UTC of the day containing ``step``."""
    return step - step % DAY_SECONDS


def iso_utc(epoch_seconds: float, *, timespec: str = "seconds") -> str:
    """ISO-8601 UTC timestamp with a ``Z`` suffix, e.g. ``2025-11-26T10:29:00Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")

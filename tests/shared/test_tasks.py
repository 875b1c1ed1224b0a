"""Background tasks end when stopped, even one that lost its cancellation."""

import asyncio
import logging

import pytest

from app.shared.tasks import stop_tasks


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    """As a refresher does when Python 3.11's `wait_for` swallows the cancellation: it
    carries on with its loop."""
    rounds = 0

    async def refresher() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if rounds == 0:
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    rounds += 1
                    continue
                raise

    task = asyncio.create_task(refresher())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(stop_tasks(task), timeout=2)
    assert task.cancelled()
    assert rounds == 1, "the first cancellation was lost and a second one ended it"


async def test_a_task_that_never_ends_is_left_after_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0.02)
    started = asyncio.get_running_loop().time()
    with caplog.at_level(logging.ERROR, logger="gateway.tasks"):
        await stop_tasks(task, within_s=0.2)
    assert 0.15 <= asyncio.get_running_loop().time() - started < 1.5
    assert not task.done()
    assert "stubborn" in caplog.text
    release.set()
    await task


async def test_ended_and_failed_tasks_and_none_are_taken_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def finishes() -> None:
        return None

    failed = asyncio.create_task(fails(), name="fails")
    finished = asyncio.create_task(finishes())
    waiting = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="gateway.tasks"):
        await stop_tasks(failed, None, finished, waiting)
    assert waiting.cancelled() and finished.result() is None
    assert "fails" in caplog.text and "boom" in caplog.text

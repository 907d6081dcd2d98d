import asyncio

import pytest

from s3gate.storage.budget import MemoryBudget


async def test_waits_when_spent_and_wakes_in_order():
    budget = MemoryBudget(100)
    await budget.acquire(60)
    order = []

    async def take(n, tag):
        await budget.acquire(n)
        order.append(tag)

    big = asyncio.create_task(take(80, "big"))
    small = asyncio.create_task(take(10, "small"))
    await asyncio.sleep(0.01)
    assert order == []  # small must not overtake big (no starvation)
    budget.release(60)
    await asyncio.wait_for(big, 1)
    await asyncio.wait_for(small, 1)
    assert order == ["big", "small"]
    assert budget.used == 90 and budget.peak == 90


async def test_cancelled_waiter_leaks_nothing():
    budget = MemoryBudget(10)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(10)
    assert budget.used == 0
    await asyncio.wait_for(budget.acquire(10), 1)


async def test_request_larger_than_total_is_capped():
    budget = MemoryBudget(10)
    await asyncio.wait_for(budget.acquire(50), 1)
    assert budget.used == 10
    budget.release(50)
    assert budget.used == 0


async def test_cancel_racing_a_release_is_a_clean_cancel():
    # The waiter is cancelled and, before it runs again, a release wakes the
    # queue (which drops the cancelled future): the waiter must see only its
    # CancelledError, and the budget must stay consistent.
    budget = MemoryBudget(10)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    budget.release(10)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0
    await asyncio.wait_for(budget.acquire(10), 1)

import asyncio

import pytest

from s3gate.storage.budget import MemoryBudget


async def queued(budget: MemoryBudget, n: int) -> None:
    """Let the loop run until n acquirers wait in the budget's queue (a condition, not a delay)."""
    for _ in range(100):
        if len(budget._waiters) == n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(budget._waiters)} waiters queued, expected {n}")


async def test_waits_when_spent_and_wakes_in_order():
    budget = MemoryBudget(100)
    await budget.acquire(60)
    order = []

    async def take(n, tag):
        await budget.acquire(n)
        order.append(tag)

    big = asyncio.create_task(take(80, "big"))
    small = asyncio.create_task(take(10, "small"))
    await queued(budget, 2)  # both wait: small (10 of the 40 left) queued behind big
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
    await queued(budget, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(10)
    assert budget.used == 0
    await asyncio.wait_for(budget.acquire(10), 1)


async def test_request_larger_than_total_is_capped():
    budget = MemoryBudget(10)
    granted = await asyncio.wait_for(budget.acquire(50), 1)
    assert granted == budget.used == 10
    budget.release(granted)
    assert budget.used == 0
    with pytest.raises(AssertionError):
        budget.release(1)  # more than was granted: a bookkeeping bug, never absorbed


async def test_cancel_racing_a_release_is_a_clean_cancel():
    # The waiter is cancelled and, before it runs again, a release wakes the
    # queue (which drops the cancelled future): the waiter must see only its
    # CancelledError, and the budget must stay consistent.
    budget = MemoryBudget(10)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(5))
    await queued(budget, 1)
    waiter.cancel()
    budget.release(10)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0
    await asyncio.wait_for(budget.acquire(10), 1)


async def test_reservation_holds_shrinks_and_releases():
    budget = MemoryBudget(100)
    async with budget.reserve(70) as held:
        assert budget.used == 70 and held.n == 70
        held.shrink(30)  # the need turned out smaller
        assert budget.used == 30 and held.n == 30
        held.shrink(50)  # never grows back
        assert budget.used == 30
    assert budget.used == 0 and budget.peak == 70


async def test_reservation_capped_and_zero_takes_nothing():
    budget = MemoryBudget(10)
    async with budget.reserve(50) as held:
        assert held.n == 10 and budget.used == 10
    async with budget.reserve(0):
        assert budget.used == 0
    assert budget.used == 0


async def test_reservation_released_on_error_and_cancel():
    budget = MemoryBudget(10)
    with pytest.raises(RuntimeError):
        async with budget.reserve(6):
            raise RuntimeError("download failed")
    assert budget.used == 0

    entered = asyncio.Event()

    async def hold():
        async with budget.reserve(6):
            entered.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold())
    await entered.wait()
    second = budget.reserve(6)
    waiter = asyncio.create_task(second.__aenter__())
    await asyncio.sleep(0)  # one turn of the loop: the task runs up to its wait
    assert budget._waiters and not waiter.done()  # 6 + 6 > 10: the second waits
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    await asyncio.wait_for(waiter, 1)  # granted once the first let go
    assert budget.used == 6
    await second.__aexit__(None, None, None)
    assert budget.used == 0

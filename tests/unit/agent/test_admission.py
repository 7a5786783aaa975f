"""The request-body budget: reservations in arrival order, timeouts, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from audit_archiver.agent.admission import BodyBudget


def test_reservations_fit_until_the_budget_is_spent() -> None:
    budget = BodyBudget(100)
    assert budget.try_reserve(60)
    assert budget.try_reserve(40)
    assert not budget.try_reserve(1)
    budget.release(40)
    assert budget.try_reserve(1)
    assert budget.used == 61


def test_a_waiting_request_is_admitted_when_bytes_come_back() -> None:
    async def scenario() -> tuple[bool, int]:
        budget = BodyBudget(100)
        assert budget.try_reserve(80)
        waiter = asyncio.create_task(budget.reserve(50, timeout=30))
        await asyncio.sleep(0)
        assert not waiter.done()
        budget.release(80)
        return await waiter, budget.used

    assert asyncio.run(scenario()) == (True, 50)


def test_waiters_are_served_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        budget = BodyBudget(100)
        assert budget.try_reserve(100)
        order: list[str] = []

        async def request(name: str, size: int) -> None:
            assert await budget.reserve(size, timeout=30)
            order.append(name)

        big = asyncio.create_task(request("big", 90))
        await asyncio.sleep(0)
        small = asyncio.create_task(request("small", 10))
        await asyncio.sleep(0)
        assert not budget.try_reserve(1)  # someone waits: no overtaking
        budget.release(100)
        await asyncio.gather(big, small)
        return order

    assert asyncio.run(scenario()) == ["big", "small"]


def test_a_wait_that_times_out_reserves_nothing_and_lets_the_next_in() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        budget = BodyBudget(100)
        assert budget.try_reserve(60)
        first = await budget.reserve(50, timeout=0.01)
        second = budget.try_reserve(40)
        return first, second, budget.used

    assert asyncio.run(scenario()) == (False, True, 100)


def test_a_cancelled_wait_gives_its_place_up() -> None:
    async def scenario() -> int:
        budget = BodyBudget(100)
        assert budget.try_reserve(100)
        waiter = asyncio.create_task(budget.reserve(70, timeout=30))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        budget.release(100)
        return budget.used

    assert asyncio.run(scenario()) == 0


def test_a_body_larger_than_the_budget_is_refused() -> None:
    async def scenario() -> None:
        await BodyBudget(100).reserve(101, timeout=1)

    with pytest.raises(ValueError, match="exceed"):
        asyncio.run(scenario())

"""Admission control for request bodies: a budget of body bytes held at once.

Every ingest request reserves its body's size (its Content-Length, or
``--max-body-bytes`` when the length is not sent) before a byte of the body is
read, and gives it back once it is answered. While the budget is spent, later
requests wait in arrival order (first come, first served: a large request is
not overtaken forever by small ones); one that waits longer than its timeout
is answered 503 with Retry-After. So the memory the main process spends on
bodies and their encoded events is bounded by the budget
(``--max-inflight-bytes``), however many connections are open and whatever
the bodies hold.

Runs on the event loop only (no locks).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["BodyBudget"]


class BodyBudget:
    """``limit`` bytes of request bodies, reserved first come, first served."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the body budget must be at least 1 byte")
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, size: int) -> bool:
        return self.used + size <= self.limit

    def try_reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes now if they fit and nobody waits before."""
        if self._waiting or not self._fits(size):
            return False
        self.used += size
        return True

    async def reserve(self, size: int, timeout: float) -> bool:
        """Reserve ``size`` bytes, waiting in turn up to ``timeout`` seconds.

        Returns False when the time ran out (nothing is reserved then).

        Raises:
            ValueError: ``size`` is over the whole budget (it could never fit).
        """
        if size > self.limit:
            raise ValueError(f"{size} bytes exceed the {self.limit}-byte budget")
        if self.try_reserve(size):
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, turn)
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await turn
        except TimeoutError:
            return self._leave(entry)  # True: granted in the same instant
        except asyncio.CancelledError:  # the client went away
            if self._leave(entry):
                self.release(size)
            raise
        return True

    def _leave(self, entry: tuple[int, asyncio.Future[None]]) -> bool:
        """Leave the queue; return True when the turn had been granted already."""
        _, turn = entry
        if turn.done() and not turn.cancelled():
            return True
        if entry in self._waiting:
            self._waiting.remove(entry)
        self._wake()  # the next one may fit now
        return False

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes and admit whoever fits next."""
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            size, turn = self._waiting.popleft()
            if turn.done():  # cancelled meanwhile
                continue
            self.used += size
            turn.set_result(None)

"""A bounded pool for inference: the event loop never runs a model, and a full queue answers 503.

A request takes a slot before its body is read; at most ``workers`` jobs run and at most
``queue_size`` wait. Past that the client gets 503 with a Retry-After estimated from recent
job times, instead of a request that hangs (and a memory that grows) under overload.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, TypeVar

from medsight.service.errors import ApiError

T = TypeVar("T")


class InferencePool:
    def __init__(self, workers: int = 2, queue_size: int = 32):
        self.workers, self.capacity = workers, workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medsight-infer")
        self._in_flight = 0  # only touched on the event loop's thread: no lock needed
        self._mean_seconds = 0.5

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead divided among the workers."""
        return max(1, math.ceil(self._in_flight * self._mean_seconds / self.workers))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the pool's places for a request, or fail at once with 503."""
        if self._in_flight >= self.capacity:
            raise ApiError(503, f"the service is busy ({self._in_flight} requests in progress); retry later",
                           headers={"Retry-After": str(self.retry_after())})
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run ``fn`` on a worker thread and await its result."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        finally:
            # Exponential moving average of job time, for Retry-After.
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.perf_counter() - start)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

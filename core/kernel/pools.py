"""The thread pools core runs blocking work in (mounts, ioctls, tar extraction, waiting on
processes): the executor core chooses, never an ad hoc thread in a handler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Executor:
    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="moorage")
        # calls that block until something happens (a container exits or starts, output comes,
        # a pull or build runs): apart, so that clients waiting cannot starve everyone else
        self._waiting_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2048,
                                                                   thread_name_prefix="moorage-wait")

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def run_waiting(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As ``run_blocking``, for calls that may block for as long as a container runs."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._waiting_pool, functools.partial(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def submit_waiting(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """As ``submit``, for long-running jobs (pulls, pushes, builds)."""
        return self._waiting_pool.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._waiting_pool.shutdown(wait=False, cancel_futures=True)

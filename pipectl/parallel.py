"""Running independent calls on a thread pool."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel(fn: Callable[[T], R], items: Iterable[T], threads: int = 16) -> list[R]:
    """``[fn(x) for x in items]`` on at most ``threads`` threads, results in
    the order of ``items``; the first error is raised."""
    items = list(items)
    if len(items) <= 1:
        return [fn(x) for x in items]
    with cf.ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Run the argument-less ``calls`` at once, a thread each (store
    requests that do not depend on each other); their results in order.
    Once every call has ended, the error of the first call (in argument
    order) that raised is raised."""
    return parallel(lambda call: call(), calls, len(calls))

"""Running service calls from browser tests.

Playwright's sync API runs an event loop in the test's thread, and the live push after
commit blocks, which it refuses to do inside a running loop: browser tests call services
through :func:`off_loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


def off_loop(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread; its result or its exception."""

    def run() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()

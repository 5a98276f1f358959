"""Pure-Python work that may take a while, run where it does not stall the worker's other requests.

A gevent worker serves all its requests on one OS thread: a long computation there (removing the
comments of a large program, reading many model answers) makes every other request of the worker,
health checks included, wait. `off_the_loop` runs such a function in a thread of gevent's native
thread pool instead; the interpreter switches threads every few milliseconds, so the worker keeps
answering. The function must not log or touch sockets (those belong to the worker's thread):
it computes and returns. Outside gevent (tests, the lab) it simply runs the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import gevent.monkey

T = TypeVar("T")


def off_the_loop(function: Callable[..., T], *args: Any) -> T:
    if not gevent.monkey.is_module_patched("thread"):
        return function(*args)
    return gevent.get_hub().threadpool.apply(function, args)

"""Pure-Python work that may take a while, done in pieces so it never stalls the worker.

A gevent worker serves all its requests on one thread: a long computation (removing the comments
of many large programs, checking ten long model answers) would make every other request of the
worker, health checks included, wait for the whole of it. Such work is split into pieces of at
most a few tens of milliseconds (one program, one answer), with `pause()` between them, which lets
the worker serve whatever is waiting before the next piece. (A thread would not do: the
interpreter's lock makes the worker's own thread queue behind it at every system call.)
Outside gevent (tests, the lab's threads) `pause()` does nothing.
"""

from __future__ import annotations

import gevent

from service.core.sockets import gevent_drives


def pause() -> None:
    if gevent_drives():
        gevent.sleep(0)

"""Cutting the provider calls still running when the server's graceful time is about to run out.

On SIGTERM gunicorn's master gives its workers AIPROXY_GRACEFUL_TIMEOUT seconds, then kills them.
A request still waiting on its provider then would vanish: no answer, no access line, no usage
record. So shortly before that time is up, the worker (`service.server.worker`) calls
`cut_provider_calls`: every greenlet waiting on a provider gets `Cut` raised where it waits, which
`service.governance.usage.measured` turns into a 503 `server_shutting_down` (recorded as the
call's usage record), answered like any other error; a provider call that starts after that fails
the same way at once. Streams waiting on their provider are ended with an error event the same way
(`service.gateway.sse.cut_streams`).
"""

from __future__ import annotations

import gevent


class Cut(BaseException):
    """Raised into a request waiting on its provider when the server stops. A BaseException, as
    gevent's own GreenletExit is, so that no provider library's `except Exception` takes it for a
    failure of its own (botocore maps those to provider errors, and a fallback would try another)."""


# Greenlets waiting on a provider right now (the plain calls, and streams while they open).
_waiting: set[gevent.Greenlet] = set()
_stopping = False


def begin_provider_wait() -> gevent.Greenlet:
    """Before a wait on a provider: `Cut` is raised in the waiting greenlet when the server stops
    (here, at once, when the server has already stopped its requests). Pair with
    `end_provider_wait` (service.governance.usage.measured does)."""
    if _stopping:
        raise Cut
    greenlet = gevent.getcurrent()
    _waiting.add(greenlet)
    return greenlet


def end_provider_wait(greenlet: gevent.Greenlet) -> None:
    _waiting.discard(greenlet)


def cut_provider_calls() -> None:
    """Raise `Cut` in every greenlet waiting on a provider, and in every provider call from now on."""
    global _stopping
    _stopping = True
    for greenlet in list(_waiting):
        interrupt(greenlet, _waiting, Cut())


def interrupt(greenlet: gevent.Greenlet, waiting: set[gevent.Greenlet], error: BaseException) -> None:
    """Raise `error` in `greenlet` as soon as the loop gets to it, if it is still in `waiting` then:
    by that time it may be writing to its client, which nothing must interrupt. (From the loop's
    callback, not from the calling greenlet: a greenlet thrown into switches back to the hub, not
    to whoever threw.)"""

    def throw() -> None:
        if greenlet in waiting:
            greenlet.throw(error)

    gevent.get_hub().loop.run_callback(throw)

"""What every fake API server shares: an aiohttp server on 127.0.0.1 in a background thread.

A fake subclasses `FakeServer` and gives `_record` (the request as the fake records it, or an
error response for a request that is no API call) and `_answer`. The base class starts and stops
the server on its own event loop, records each request in `requests` (unless `record=False`),
counts the requests being answered in `active`, and notes in `disconnects` each request whose
client went away before its answer was complete (`wait_for_disconnect` waits for them).

`count_words` is the fakes' stand-in for a tokenizer. `serve_until_signalled` is the command-line
mode (the benchmark runs a fake in its own process): it prints `ready <url>` and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import threading
from collections.abc import Collection
from typing import Any, Generic, Self, TypeVar

from aiohttp import web

Recorded = TypeVar("Recorded")  # how a fake records a request


class FakeServer(Generic[Recorded]):
    thread_name = "fake-server"

    def __init__(self, *, port: int = 0, record: bool = True, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.record = record
        self.tls = tls  # serve HTTPS with this server context
        self.requests: list[Recorded] = []
        self.disconnects: list[Recorded] = []  # requests whose client went away before the end
        self.active = 0  # requests being answered right now
        self._lock = threading.Lock()
        self._disconnected = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def wait_for_disconnect(self, count: int = 1, timeout: float = 10.0) -> bool:
        with self._disconnected:
            return self._disconnected.wait_for(lambda: len(self.disconnects) >= count, timeout)

    # --- what a fake gives ---------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded | web.StreamResponse:
        """The request as recorded, or a response that refuses it before it counts as a request."""
        raise NotImplementedError

    async def _answer(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        raise NotImplementedError

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._serve())
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._stopping = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that goes away cancels its handler, which is how the
        # fake notices (and records) a disconnect even while it is pausing between chunks.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=4096, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    # --- request handling ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if isinstance(recorded, web.StreamResponse):
            return recorded
        if self.record:
            with self._lock:
                self.requests.append(recorded)
        self.active += 1
        try:
            return await self._answer(request, recorded)
        except (asyncio.CancelledError, ConnectionError):
            if not self._stopping:
                with self._disconnected:
                    self.disconnects.append(recorded)
                    self._disconnected.notify_all()
            raise
        finally:
            self.active -= 1


# --- answers ------------------------------------------------------------------------------------


def count_words(value: Any, skip_keys: Collection[str] = ()) -> int:
    """A stand-in for a tokenizer: whitespace-separated words of every string inside `value`,
    but for the values of `skip_keys` in its objects."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(v, skip_keys) for v in value)
    if isinstance(value, dict):
        return sum(count_words(v, skip_keys) for k, v in value.items() if k not in skip_keys)
    return 0


# --- command line (used by the benchmark) ---------------------------------------------------------


def command_line(description: str) -> argparse.ArgumentParser:
    """The options every fake takes from the command line; a fake adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--stream-pause", type=float, default=0.0, help="seconds between streamed parts")
    return parser


def serve_until_signalled(fake: FakeServer) -> None:
    """Start `fake`, print `ready <url>` and serve until SIGTERM or SIGINT."""
    # Blocked before the server thread starts (it inherits the mask), so sigwait receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    fake.start()
    print(f"ready {fake.url}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    fake.stop()

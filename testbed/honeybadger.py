"""A local stand-in for the Honeybadger API: a real HTTP server on 127.0.0.1 that keeps notices.

Point the real honeybadger client at it with `HONEYBADGER_ENDPOINT=catcher.url`, then read
`catcher.notices` (each the JSON payload the client sent, with its `X-Api-Key` header).

    with HoneybadgerCatcher() as catcher:
        ...
        catcher.wait_for(2)
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HoneybadgerCatcher:
    def __init__(self) -> None:
        self.notices: list[dict] = []
        self.api_keys: list[str] = []
        self._lock = threading.Lock()
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if self.path.startswith("/v1/notices"):
                    with catcher._lock:
                        catcher.notices.append(json.loads(body))
                        catcher.api_keys.append(self.headers.get("X-Api-Key", ""))
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "fake-notice"}')

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HoneybadgerCatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        """Wait until at least `count` notices arrived; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.notices) >= count:
                    return list(self.notices)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notices, got {len(self.notices)}: {self.notices}")

    def raw(self) -> str:
        """Everything received, as one string, to search for leaked values."""
        with self._lock:
            return json.dumps(self.notices)

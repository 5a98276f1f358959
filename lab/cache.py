"""Model answers cached on disk, so an unchanged evaluation reruns without upstream calls.

The wrapper also counts calls and tokens: every answer used (invalid ones included) and the ones
fetched from the upstream in this run.

The key is the SHA-256 of the canonical JSON of everything that determines the answer: the whole
request body (model, messages, temperature, n, ...) and the upstream base URL. Change the prompt,
the rubric, an example, a student's program or a parameter and the key changes, so the next run
asks the model again. The provider key is not part of the body and never reaches the cache.

Each answer is one file, `<folder>/<key[:2]>/<key>.json`, holding the request body and the
response, so a cached answer can be read by a person. Failed calls are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.core.errors import ProviderError, ProviderKeyMissing

Complete = Callable[[dict[str, Any]], dict[str, Any]]


def cache_key(body: dict[str, Any], base_url: str) -> str:
    canonical = json.dumps(
        {"base_url": base_url.rstrip("/"), "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AnswerCache:
    """Wraps a `complete(body) -> response` callable; safe to share between threads.

    `read=False` asks the model again even when an answer is cached (`--refresh-cache`);
    `write=False` keeps nothing (`--no-cache`). Either way the calls are counted.
    """

    def __init__(self, folder: str | Path, base_url: str, *, read: bool = True, write: bool = True) -> None:
        self.folder = Path(folder)
        self.base_url = base_url
        self.read = read
        self.write = write
        self.cached = 0  # answers taken from the cache
        self.upstream = 0  # requests sent to the upstream (failed ones too)
        self.usage: dict[str, int] = {}  # tokens of every answer used, cached or fresh
        self.fresh_usage: dict[str, int] = {}  # tokens of the answers fetched in this run
        self._lock = threading.Lock()

    def path(self, body: dict[str, Any]) -> Path:
        key = cache_key(body, self.base_url)
        return self.folder / key[:2] / f"{key}.json"

    def lookup(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The cached answer the wrapper would use for `body` (None: it would ask), uncounted."""
        return self._read(self.path(body)) if self.read else None

    def wrap(self, complete: Complete) -> Complete:
        def cached_complete(body: dict[str, Any]) -> dict[str, Any]:
            path = self.path(body)
            response = self._read(path) if self.read else None
            if response is not None:
                with self._lock:
                    self.cached += 1
                    _add(self.usage, response)
                return response
            try:
                response = complete(body)
            except ProviderError as error:
                if not isinstance(error, ProviderKeyMissing):  # without a key nothing was sent
                    with self._lock:
                        self.upstream += 1
                raise
            if self.write:
                self._write(path, body, response)
            with self._lock:
                self.upstream += 1
                _add(self.usage, response)
                _add(self.fresh_usage, response)
            return response

        return cached_complete

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # absent or damaged (e.g. a run killed mid-write by hand): ask again
        response = entry.get("response") if isinstance(entry, dict) else None
        return response if isinstance(response, dict) else None

    @staticmethod
    def _write(path: Path, body: dict[str, Any], response: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump({"request": body, "response": response}, file, ensure_ascii=False, indent=1)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _add(totals: dict[str, int], response: dict[str, Any]) -> None:
    usage = response.get("usage")
    for name, value in (usage if isinstance(usage, dict) else {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            totals[name] = totals.get(name, 0) + value

"""Which client owns which provider object (an uploaded file, a batch): a client sees and touches
only its own, so one provider account can serve every client without them seeing each other's.

The routes of `/v1/files` and `/v1/batches` record an object when its client creates it and look
it up before anything else reaches the provider; another client's id is answered as if it did not
exist. Records are kept in the shared store when there is one (every process and task sees them:
a set per client and kind, under the client's hash tag like its limits), else in this process.
A batch's cost is charged once, by whichever request first sees it finished (`first_charge`).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from service.core.errors import Unavailable

# How long a batch's "charged" mark is kept: far longer than a batch may run or be polled.
CHARGED_SECONDS = 400 * 86400


class Ownership(Protocol):
    def record(self, client: str, kind: str, object_id: str) -> None: ...

    def owns(self, client: str, kind: str, object_id: str) -> bool: ...

    def owned(self, client: str, kind: str) -> set[str]: ...

    def forget(self, client: str, kind: str, object_id: str) -> None: ...

    def first_charge(self, client: str, kind: str, object_id: str) -> bool:
        """True the first time it is asked for this object, then never again."""
        ...


class LocalOwnership:
    """Ownership in this process (no shared store): lost at a restart, like local limits."""

    def __init__(self) -> None:
        self._owned: dict[tuple[str, str], set[str]] = {}
        self._charged: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def record(self, client: str, kind: str, object_id: str) -> None:
        with self._lock:
            self._owned.setdefault((client, kind), set()).add(object_id)

    def owns(self, client: str, kind: str, object_id: str) -> bool:
        with self._lock:
            return object_id in self._owned.get((client, kind), ())

    def owned(self, client: str, kind: str) -> set[str]:
        with self._lock:
            return set(self._owned.get((client, kind), ()))

    def forget(self, client: str, kind: str, object_id: str) -> None:
        with self._lock:
            self._owned.get((client, kind), set()).discard(object_id)

    def first_charge(self, client: str, kind: str, object_id: str) -> bool:
        with self._lock:
            mark = (client, kind, object_id)
            if mark in self._charged:
                return False
            self._charged.add(mark)
            return True


class SharedOwnership:
    """Ownership in the shared store. A store that cannot be reached is a 503: an object whose
    owner is unknown is never handed to anyone."""

    def __init__(self, store: Any) -> None:
        from service.store.client import STORE_ERRORS  # redis-py: only with a store

        self._store = store
        self._errors = STORE_ERRORS

    @staticmethod
    def _key(client: str, kind: str) -> str:
        return f"aiproxy:{{{client}}}:owned:{kind}"

    def _call(self, method: str, *args: Any, **options: Any) -> Any:
        try:
            return getattr(self._store, method)(*args, **options)
        except self._errors:
            raise Unavailable(
                "The store of who owns which file and batch cannot be reached; try again shortly.",
                code="ownership_store_unavailable",
            ) from None

    def record(self, client: str, kind: str, object_id: str) -> None:
        self._call("sadd", self._key(client, kind), object_id)

    def owns(self, client: str, kind: str, object_id: str) -> bool:
        return bool(self._call("sismember", self._key(client, kind), object_id))

    def owned(self, client: str, kind: str) -> set[str]:
        members = self._call("smembers", self._key(client, kind))
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    def forget(self, client: str, kind: str, object_id: str) -> None:
        self._call("srem", self._key(client, kind), object_id)

    def first_charge(self, client: str, kind: str, object_id: str) -> bool:
        key = f"aiproxy:{{{client}}}:charged:{kind}:{object_id}"
        return bool(self._call("set", key, "1", nx=True, ex=CHARGED_SECONDS))


def build_ownership(store: Any) -> Ownership:
    return LocalOwnership() if store is None else SharedOwnership(store)

"""What the answer cache keeps: the key of a question, an entry's encoding, and `AnswerCache`.

The key is a hash of who owns the entry (a client, or the shared namespace its entry names), the
kind of question (the route, or a safety check's name), the resolved model and the request's body
in canonical form: keys sorted, no whitespace, so two bodies that differ only in key order or
spacing are the same question. The client key is never part of it, nor of the entry.

An entry is one value: a line of JSON (status, content type, when it was stored, the model and
the tokens the answer used: what a hit saves, priced when it is answered) and then the answer's
bytes exactly as the client received them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from service.store.answers import AnswerStore

if TYPE_CHECKING:
    from service.store.connections import Along

KEY_PREFIX = "aiproxy:answer:"


def canonical(body: Any) -> bytes:
    """`body` as JSON with its keys sorted and no whitespace: the same for the same question."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def deployments_key(names: Iterable[str]) -> str:
    """The `model` part of a key: the deployments a model routes to, in no particular order (a
    weighted group shuffles them), so the same question for the same deployments is one entry
    whichever of them answers. The relay and the safety checks key on it alike."""
    return ",".join(sorted(set(names)))


def cache_key(owner: str, kind: str, model: str, body: Any) -> str:
    digest = hashlib.sha256()
    for part in (owner.encode(), kind.encode(), model.encode()):
        digest.update(len(part).to_bytes(4, "big") + part)  # length-prefixed: no two splits collide
    digest.update(canonical(body))
    return KEY_PREFIX + digest.hexdigest()


@dataclass
class Entry:
    body: bytes  # the answer's bytes as the client received them (a stream: its events)
    content_type: str
    stored_at: float  # seconds since the epoch
    status: int = 200
    stream: bool = False
    model: str | None = None  # the model as its provider knows it (what prices name)
    deployment: str | None = None  # what x-aiproxy-deployment said
    prompt_tokens: int = 0  # what the answer used: what a hit saves
    completion_tokens: int = 0
    cached_tokens: int = 0

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored_at)

    def encode(self) -> bytes:
        head = {k: v for k, v in asdict(self).items() if k != "body"}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def decode(cls, value: bytes) -> Entry | None:
        """The entry `value` encodes, or None when it is not one (written by another version)."""
        head, newline, body = value.partition(b"\n")
        try:
            fields = json.loads(head) if newline else None
            return cls(body=body, **fields) if isinstance(fields, dict) else None
        except (ValueError, TypeError):
            return None


class AnswerCache:
    """Entries read and kept in `store`; a store that fails is a miss (the stores swallow it)."""

    def __init__(self, store: AnswerStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    key = staticmethod(cache_key)

    def along(self, key: str) -> Along | None:
        """The read of `key` to send with the request's admission (`lookup(..., along=)`)."""
        return self.store.along(key)

    def lookup(self, key: str, *, max_age: float | None = None, along: Along | None = None) -> Entry | None:
        """The entry under `key`, when there is one no older than `max_age` seconds (None: any)."""
        value = self.store.get(key, along)
        entry = Entry.decode(value) if value is not None else None
        if entry is None or (max_age is not None and entry.age(self.clock()) > max_age):
            return None
        return entry

    def keep(self, key: str, entry: Entry, ttl_s: int) -> None:
        self.store.put(key, entry.encode(), ttl_s)

"""When the answer cache is read and written, for a client whose entry turns it on.

Per request, `Cache-Control` (RFC 9111's request directives, as Envoy's cache honours them):

- `no-cache`: the cache is not read, but the new answer is kept (a refresh);
- `no-store`: neither read nor written;
- `max-age=N`: only an entry at most N seconds old is answered (and a sampled answer may be kept).

A request whose answer depends on sampling (`temperature` above 0, or several choices, `n` above
1) is cached only when it says `max-age` or its client's entry sets `cache_nondeterministic`: the
client then accepts a repeat of one sample. Only finished answers are kept: status 200, every
choice finished for another reason than `length` or `content_filter` (a Responses API answer
`completed`), and a stream only once it ran to its end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from service.cache.settings import CacheSettings

UNFINISHED = frozenset({"length", "content_filter"})


@dataclass(frozen=True)
class Plan:
    read: bool
    write: bool
    max_age: float | None = None  # accept only entries this young (seconds); None: any


@dataclass(frozen=True)
class Directives:
    no_cache: bool = False
    no_store: bool = False
    max_age: int | None = None


def directives(header: str | None) -> Directives:
    """The request's `Cache-Control` directives this cache honours; others are ignored."""
    if not header:
        return Directives()
    no_cache = no_store = False
    max_age = None
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name == "max-age":
            digits = value.strip().strip('"')
            if digits.isdigit():  # a malformed value is ignored, as RFC 9111 lets a cache do
                max_age = int(digits)
    return Directives(no_cache, no_store, max_age)


def sampled(fields: dict[str, Any]) -> bool:
    """Whether the answer depends on sampling: `temperature` above 0 or more than one choice."""
    temperature = fields.get("temperature")
    choices = fields.get("n")
    hot = _number(temperature) and temperature > 0
    many = _number(choices) and choices > 1
    return hot or many


def plan(settings: CacheSettings, header: str | None, *, is_sampled: bool) -> Plan:
    """What to do with the cache for one request of a client with `settings`."""
    asked = directives(header)
    if asked.no_store:
        return Plan(read=False, write=False)
    if is_sampled and not settings.nondeterministic and asked.max_age is None:
        return Plan(read=False, write=False)
    return Plan(read=not asked.no_cache, write=True, max_age=asked.max_age)


def finished_whole(path: str, body: bytes) -> bool:
    """Whether a whole (not streamed) 200 answer of `path` is complete enough to keep."""
    if not path.endswith(("/chat/completions", "/completions", "/responses")):
        return True  # embeddings, moderations: nothing is cut short
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(answer, dict) and _finished(answer)


def finished_stream(body: bytes) -> bool:
    """Whether a stream's events ran to their end, with no error and no choice cut short: a chat
    or completion stream ends with `data: [DONE]`, a Responses API stream with
    `response.completed`."""
    done = False
    for frame in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"".join(line[5:].strip() for line in frame.split(b"\n") if line.startswith(b"data:"))
        if not data:
            continue
        if data == b"[DONE]":
            done = True
            continue
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            return False
        if not isinstance(event, dict) or "error" in event:
            return False
        kind = event.get("type")
        if kind in ("response.failed", "response.incomplete", "error"):
            return False
        if kind == "response.completed":
            done = True
        elif not _finished(event):
            return False
    return done


def _finished(answer: dict[str, Any]) -> bool:
    if "status" in answer and answer.get("object") == "response":
        status: object = answer["status"]
        return status == "completed"
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return "error" not in answer
    return all(not isinstance(c, dict) or c.get("finish_reason") not in UNFINISHED for c in choices)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)

"""Usage records: one structured log line per proxied request, on the logger `service.usage`.

Fields (top-level keys in JSON format): request_id, client, route, model, status, stream,
upstream_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens (when the upstream reported
them; for streams, when the last chunk carries usage), and error (what went wrong, if anything).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flask import g

from service.observability import current_route, in_request

log = logging.getLogger("service.usage")

_USAGE_KEY = b'"usage"'
_decoder = json.JSONDecoder()


def normalise_usage(usage: Any) -> dict[str, int] | None:
    """Token counts under the chat names; the Responses API's input/output names are mapped."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    total = usage.get("total_tokens")
    counts = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    counts = {k: v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}
    return counts or None


def usage_in(data: bytes) -> dict[str, int] | None:
    """The token counts in a JSON body, found without parsing all of it (embeddings are large).

    Inside a JSON string every quote is escaped, so an unescaped `"usage"` followed by a colon is
    always a key; the last one wins because usage follows the content in every OpenAI answer.
    """
    end = len(data)
    while True:
        at = data.rfind(_USAGE_KEY, 0, end)
        if at < 0:
            return None
        rest = data[at + len(_USAGE_KEY) :].lstrip()
        if rest.startswith(b":"):
            try:
                value, _ = _decoder.raw_decode(rest[1:].lstrip().decode("utf-8", "replace"))
            except ValueError:
                value = None
            counts = normalise_usage(value)
            if counts:
                return counts
        end = at


class StreamUsage:
    """Watches a Server-Sent Events stream go by and keeps the last usage it carried."""

    def __init__(self) -> None:
        self.usage: dict[str, int] | None = None
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            complete, self._partial = b"", data
        else:
            complete, self._partial = data[:cut], data[cut + 1 :]
        if len(self._partial) > 1 << 20:
            self._partial = b""  # not an SSE stream we understand; do not hoard it
        if _USAGE_KEY not in complete:
            return  # the common case: content chunks, nothing to parse
        for line in complete.split(b"\n"):
            if line.startswith(b"data:") and _USAGE_KEY in line:
                found = usage_in(line[5:])
                if found:
                    self.usage = found


@dataclass
class UsageRecord:
    """What one proxied request used; `emit()` writes it. Made while the request is handled."""

    model: str | None
    stream: bool = False
    route: str = "-"  # the matched URL rule of the request, filled in when made inside one
    request_id: str = "-"
    client: str = "anonymous"
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if in_request():
            self.route = current_route()
            self.request_id = g.request_id
            self.client = g.get("client", self.client)
            self.started = g.get("started", self.started)

    def emit(
        self,
        status: int,
        *,
        upstream_seconds: float | None,
        usage: dict[str, int] | None = None,
        error: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "client": self.client,
            "route": self.route,
            "model": self.model,
            "status": status,
            "stream": self.stream,
            "upstream_ms": None if upstream_seconds is None else round(upstream_seconds * 1000, 1),
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 1),
        }
        fields.update(usage or {})
        if error:
            fields["error"] = error
        log.info("usage %s %s %s", self.route, self.model or "-", status, extra=fields)

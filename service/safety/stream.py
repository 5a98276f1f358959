"""The output filter of a streamed answer: text reaches the client only once it passed the checks.

The provider's stream arrives as chunks of one or more whole server-sent events. Events are held
back while their text builds a segment; a segment ends at a sentence end, once it holds
`output_segment_chars` characters, and at the end of the stream. Each segment is checked; when it
passes, every event held so far goes out (as one chunk) in the order it came; when it is refused,
the client gets a last chunk whose `finish_reason` is `content_filter` (with the `safety`
object), then `[DONE]`, and the provider's stream is closed: no refused text is ever sent. A
Responses API stream (`response.output_text.delta` events) ends instead with a
`response.incomplete` event whose response says `incomplete_details.reason: content_filter`, as
a whole refused Responses answer does.

The cost is the wait for a segment: the first token reaches the client once the first sentence
is complete and checked (docs/safety.md has the measured figures).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from service.core.errors import ProxyError
from service.gateway import sse
from service.safety.texts import CHAT, RESPONSES, delta_text

# A sentence ends with . ! ? (or their CJK forms, or an ellipsis), perhaps closed by quotes or
# brackets, before white space or at the end of the text so far; a line break ends one too.
_SENTENCE_END = re.compile(r"(?:[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*(?:\s|$)|\n)")
_DONE = b"[DONE]"


def ends_segment(text: str, segment_chars: int) -> bool:
    return len(text) >= segment_chars or _SENTENCE_END.search(text) is not None


def filtered(
    chunks: Iterable[bytes],
    check: Callable[[str], Any],
    *,
    path: str,
    segment_chars: int,
) -> Iterator[bytes]:
    """`chunks` as the client may see them; `check(text)` returns a verdict (`.flagged`,
    `.safety()`) or raises a ProxyError (a check that failed closed)."""
    held: list[bytes] = []
    pending = ""  # the text of the held events, not yet checked
    last: dict[str, Any] = {}  # the latest chunk: its id, model and created stamp the refusal chunk
    source = iter(chunks)
    try:
        for chunk in source:
            for event in sse.split_events(chunk):
                data = sse.event_data(event)
                if data is None and _DONE in event and pending:
                    refusal = _checked(check, pending, last, path)
                    if refusal is not None:
                        yield refusal
                        return
                    pending = ""
                held.append(event)
                if data is None:
                    continue
                if path != RESPONSES:
                    last = data  # the latest chunk: its id, model and created stamp the refusal
                elif isinstance(data.get("response"), dict):
                    last = data["response"]  # the Responses API's response, as its events say it
                text = delta_text(data)
                if not text:
                    continue
                pending += text
                if ends_segment(pending, segment_chars):
                    refusal = _checked(check, pending, last, path)
                    if refusal is not None:
                        yield refusal
                        return
                    pending = ""
                    yield b"".join(held)
                    held.clear()
            if held and not pending:  # events without unchecked text before them (usage, [DONE])
                yield b"".join(held)
                held.clear()
        if pending:
            refusal = _checked(check, pending, last, path)
            if refusal is not None:
                yield refusal
                return
        if held:
            yield b"".join(held)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # the provider's stream: closed, its usage recorded


def _checked(check: Callable[[str], Any], text: str, last: dict[str, Any], path: str) -> bytes | None:
    """None when `text` passed; else what ends the stream instead."""
    try:
        verdict = check(text)
    except ProxyError as error:  # a check failed and the policy fails closed
        return sse.error_event(error)
    if not verdict.flagged:
        return None
    if path == RESPONSES:
        return incomplete_event(last, verdict.safety())
    return refusal_chunk(last, path, verdict.safety()) + sse.DONE


def incomplete_event(response: dict[str, Any], safety: dict[str, Any]) -> bytes:
    """The last event of a refused Responses API stream (it has no `[DONE]`)."""
    ended: dict[str, Any] = {
        key: response[key] for key in ("id", "object", "created_at", "model") if key in response
    }
    ended.update(status="incomplete", incomplete_details={"reason": "content_filter"}, output=[])
    data = {"type": "response.incomplete", "response": ended, "safety": safety}
    return b"event: response.incomplete\n" + sse.event(data)


def refusal_chunk(last: dict[str, Any], path: str, safety: dict[str, Any]) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "content_filter"}
    if path == CHAT:
        choice["delta"] = {}
        kind = "chat.completion.chunk"
    else:
        choice.update(text="", logprobs=None)
        kind = "text_completion"
    chunk = {
        "id": last.get("id", "filtered"),
        "object": last.get("object", kind),
        "created": last.get("created", 0),
        "model": last.get("model", ""),
        "choices": [choice],
        "safety": safety,
    }
    return sse.event(chunk)

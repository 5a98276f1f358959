"""The text in OpenAI-shaped requests and answers: what is checked, redacted, or emptied.

Requests: chat `messages` (string content and `text` parts), completions' `prompt`, the
Responses API's `input` and `instructions`, and the `input` of embeddings and moderations (a
string, a list of strings, or moderation's typed `text` parts; token arrays carry no text).
What the input checks read is what the user wrote (the `user` messages, the prompt, the input);
personal data is redacted from everything the client sends. Answers: each choice's message
content (chat), text (completions), or the output text of a Responses answer (whole, or its
stream's deltas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

CHAT, COMPLETIONS, RESPONSES = "/chat/completions", "/completions", "/responses"
INPUTS = ("/embeddings", "/moderations")  # an `input` only: redacted, never checked


def _content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def _rewrite_content(content: Any, change: Callable[[str], str]) -> Any:
    if isinstance(content, str):
        return change(content)
    if isinstance(content, list):
        return [
            {**part, "text": change(part["text"])}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def _items(body: dict[str, Any], path: str) -> list[Any]:
    field = "messages" if path == CHAT else "input"
    items = body.get(field)
    return items if isinstance(items, list) else []


def user_text(path: str, body: dict[str, Any]) -> str:
    """What the input checks read: the user's words, joined by blank lines."""
    found: list[str] = []
    if path == COMPLETIONS:
        prompt = body.get("prompt")
        found += [prompt] if isinstance(prompt, str) else [p for p in prompt or () if isinstance(p, str)]
    elif path == RESPONSES and isinstance(body.get("input"), str):
        found.append(body["input"])
    else:
        for item in _items(body, path):
            if isinstance(item, dict) and item.get("role", "user") == "user":
                found += _content_texts(item.get("content"))
    return "\n\n".join(text for text in found if text)


def _inputs(value: Any) -> Iterator[str]:
    """The texts of an embeddings or moderations `input`."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            yield item["text"]


def _rewrite_inputs(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if not isinstance(value, list):
        return value
    return [
        change(item)
        if isinstance(item, str)
        else {**item, "text": change(item["text"])}
        if isinstance(item, dict) and isinstance(item.get("text"), str)
        else item
        for item in value
    ]


def every_text(path: str, body: dict[str, Any]) -> Iterator[str]:
    """Every text the client sends (what PII redaction covers)."""
    if path in INPUTS:
        yield from _inputs(body.get("input"))
        return
    for field in ("prompt", "input", "instructions"):
        value = body.get(field)
        if isinstance(value, str):
            yield value
        elif field == "prompt" and isinstance(value, list):
            yield from (p for p in value if isinstance(p, str))
    for item in _items(body, path):
        if isinstance(item, dict):
            yield from _content_texts(item.get("content"))


def rewritten(path: str, body: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """`body` with `change` applied to every text the client sends (a new object; `body` is kept)."""
    new = dict(body)
    if path in INPUTS:
        new["input"] = _rewrite_inputs(body.get("input"), change)
        return new
    for field in ("prompt", "input", "instructions"):
        value = body.get(field)
        if isinstance(value, str):
            new[field] = change(value)
        elif field == "prompt" and isinstance(value, list):
            new[field] = [change(p) if isinstance(p, str) else p for p in value]
    items = _items(body, path)
    if items:
        new["messages" if path == CHAT else "input"] = [
            {**item, "content": _rewrite_content(item.get("content"), change)}
            if isinstance(item, dict) and "content" in item
            else item
            for item in items
        ]
    return new


def answer_texts(path: str, data: dict[str, Any]) -> list[str]:
    """The generated text of a whole answer, one string per choice (or output)."""
    if path == RESPONSES:
        return [
            part["text"]
            for item in data.get("output") or ()
            if isinstance(item, dict)
            for part in item.get("content") or ()
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    texts: list[str] = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if path == CHAT:
            message = choice.get("message")
            texts += _content_texts(message.get("content")) if isinstance(message, dict) else ()
        elif isinstance(choice.get("text"), str):
            texts.append(choice["text"])
    return texts


def emptied(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """A refused whole answer: its text gone, ended as Azure OpenAI ends a filtered one."""
    if path == RESPONSES:
        reason = {"reason": "content_filter"}
        return {**data, "output": [], "status": "incomplete", "incomplete_details": reason}
    choices = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        choice = {**choice, "finish_reason": "content_filter"}
        if path == CHAT and isinstance(choice.get("message"), dict):
            # Nothing generated goes out: no tool call either (its arguments were not checked).
            message = {k: v for k, v in choice["message"].items() if k not in ("tool_calls", "function_call")}
            choice["message"] = {**message, "content": ""}
        else:
            choice["text"] = ""
        choices.append(choice)
    return {**data, "choices": choices}


# The Responses API's stream events that add text the client reads (the `.done` events after them
# repeat it whole: they are held behind the deltas until those passed).
RESPONSES_DELTAS = ("response.output_text.delta", "response.refusal.delta")


def delta_text(event: dict[str, Any]) -> str:
    """The text a streamed chat or completions chunk adds (every choice's), or a Responses API
    stream event's delta."""
    kind = event.get("type")
    if kind is not None:
        delta = event.get("delta")
        return delta if kind in RESPONSES_DELTAS and isinstance(delta, str) else ""
    parts = []
    for choice in event.get("choices") or ():
        if isinstance(choice, dict):
            delta = choice.get("delta")
            value = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(value, str):
                parts.append(value)
    return "".join(parts)

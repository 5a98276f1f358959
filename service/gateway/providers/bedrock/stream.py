"""ConverseStream events to OpenAI `chat.completion.chunk` objects, one event at a time.

The first chunk of a choice carries the role, then text arrives as `content` deltas and tool calls
as `tool_calls` deltas (id and name first, then argument fragments), then a chunk with the
`finish_reason`. Token counts arrive in the `metadata` event after `messageStop`; the caller turns
them into the final usage chunk (choices `[]`) when the client asked with `stream_options`.
"""

from __future__ import annotations

from typing import Any

from service.gateway.providers.bedrock.translate import finish_reason, usage


class ChunkWriter:
    """Builds chunks that share one completion id, model and creation time."""

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = created
        self.include_usage = include_usage

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
        return chunk

    def delta(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self.chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def usage_chunk(self, total: dict[str, int]) -> dict[str, Any]:
        return self.chunk([], usage=total)


class ChoiceStream:
    """Translates the events of one ConverseStream call into chunks of choice `index`."""

    def __init__(self, writer: ChunkWriter, index: int) -> None:
        self.writer = writer
        self.index = index
        self.usage: dict[str, int] | None = None
        self._tool_calls: dict[int, int] = {}  # contentBlockIndex -> tool call index
        self._started = False

    def chunks(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if "messageStart" in event:
            return [self._start()]
        out = [] if self._started else [self._start()]
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool_use = (start.get("start") or {}).get("toolUse")
            if tool_use:
                call = len(self._tool_calls)
                self._tool_calls[start.get("contentBlockIndex", 0)] = call
                out.append(
                    self.writer.delta(
                        self.index,
                        {
                            "tool_calls": [
                                {
                                    "index": call,
                                    "id": tool_use["toolUseId"],
                                    "type": "function",
                                    "function": {"name": tool_use["name"], "arguments": ""},
                                }
                            ]
                        },
                    )
                )
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if "text" in delta:
                out.append(self.writer.delta(self.index, {"content": delta["text"]}))
            elif "toolUse" in delta:
                call = self._tool_calls.get(block.get("contentBlockIndex", 0), 0)
                fragment = delta["toolUse"].get("input", "")
                out.append(
                    self.writer.delta(
                        self.index, {"tool_calls": [{"index": call, "function": {"arguments": fragment}}]}
                    )
                )
            # Reasoning, citations and other block kinds have no chat-completions equivalent.
        elif "messageStop" in event:
            reason = finish_reason(event["messageStop"].get("stopReason"))
            out.append(self.writer.delta(self.index, {}, finish=reason))
        elif "metadata" in event:
            self.usage = usage(event["metadata"].get("usage"))
        return out

    def _start(self) -> dict[str, Any]:
        self._started = True
        return self.writer.delta(self.index, {"role": "assistant", "content": ""})

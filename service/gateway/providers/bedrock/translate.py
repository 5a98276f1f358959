"""OpenAI chat-completions shapes to and from Amazon Bedrock Converse shapes (plain data, no I/O).

Requests: system messages become Converse `system` blocks; user and assistant turns keep their
order, with consecutive turns of one role merged (Converse wants the roles to alternate); `tool`
messages become `toolResult` blocks of a user turn; images must be `data:` URLs because Converse
takes the bytes, not a link. Fields with no Converse equivalent (seed, penalties, logprobs, user)
are ignored, as other OpenAI-compatible gateways do.

Responses: text blocks joined into `content`, `toolUse` blocks into `tool_calls`, `stopReason`
mapped to `finish_reason`, token counts into `usage`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any

from service.core.errors import RequestRejected

# Converse stopReason -> OpenAI finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}

IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

MAX_N = 10  # `n` is served by that many Converse calls


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def _invalid(message: str, param: str) -> RequestRejected:
    return RequestRejected(message, param=param, code="invalid_value")


# --- request --------------------------------------------------------------------------------------


def converse_request(body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The keyword arguments of `Converse`/`ConverseStream` for an OpenAI chat-completions body."""
    system, messages = _messages(body.get("messages"))
    request: dict[str, Any] = {"modelId": model_id, "messages": messages}
    if system:
        request["system"] = system
    inference = _inference_config(body)
    if inference:
        request["inferenceConfig"] = inference
    tool_config = _tool_config(body, messages)
    if tool_config:
        request["toolConfig"] = tool_config
    return request


def choice_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise _invalid(f"'n' must be a whole number from 1 to {MAX_N} for Bedrock models", "n")
    return n


def _messages(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("'messages' must be a non-empty array of message objects", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(f"'{param}' must be an object", param)
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": text} for text in _texts(message.get("content"), param) if text]
            continue
        if role == "user":
            blocks = _user_content(message.get("content"), param)
            turn_role = "user"
        elif role == "assistant":
            blocks = _assistant_content(message, param)
            turn_role = "assistant"
        elif role == "tool":
            blocks = [_tool_result(message, param)]
            turn_role = "user"
        else:
            raise _invalid(
                f"'{param}.role' must be system, developer, user, assistant or tool; got {role!r}",
                f"{param}.role",
            )
        if not blocks:
            continue  # an empty turn: Converse rejects blank content, and it says nothing
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    return system, turns


def _texts(content: Any, param: str) -> list[str]:
    """The text of a system or tool message: a string or an array of text parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise _invalid(f"'{param}.content[{j}]' must be a text part", f"{param}.content[{j}]")
            texts.append(part["text"])
        return texts
    raise _invalid(f"'{param}.content' must be a string or an array of parts", f"{param}.content")


def _user_content(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _invalid(f"'{param}.content' must be a string or an array of parts", f"{param}.content")
    blocks = []
    for j, part in enumerate(content):
        part_param = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), part_param))
        else:
            raise _invalid(
                f"'{part_param}' is not supported for Bedrock models; use a text or image_url part",
                part_param,
            )
    return blocks


def _image(image_url: Any, param: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise _invalid(f"'{param}.image_url.url' must be a string", f"{param}.image_url.url")
    if not url.startswith("data:"):
        raise _invalid(
            f"'{param}.image_url.url' must be a data: URL (base64) for Bedrock models, "
            "which take the image's bytes rather than a link",
            f"{param}.image_url.url",
        )
    header, _, data = url[len("data:") :].partition(",")
    mime, _, encoding = header.partition(";")
    image_format = IMAGE_FORMATS.get(mime.lower())
    if image_format is None or encoding.lower() != "base64":
        raise _invalid(
            f"'{param}.image_url.url' must be a base64 data: URL of a PNG, JPEG, GIF or WebP image",
            f"{param}.image_url.url",
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"'{param}.image_url.url' holds invalid base64", f"{param}.image_url.url") from None
    return {"image": {"format": image_format, "source": {"bytes": raw}}}


def _assistant_content(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, list):
        # Assistant parts are text or refusal; both are plain text to Converse.
        for j, part in enumerate(content):
            text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
            if not isinstance(text, str):
                raise _invalid(f"'{param}.content[{j}]' must be a text part", f"{param}.content[{j}]")
            if text:
                blocks.append({"text": text})
    elif isinstance(content, str):
        if content:
            blocks.append({"text": content})
    elif content is not None:
        raise _invalid(f"'{param}.content' must be a string, an array of parts or null", f"{param}.content")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise _invalid(f"'{param}.tool_calls' must be an array", f"{param}.tool_calls")
    for k, call in enumerate(tool_calls):
        blocks.append({"toolUse": _tool_use(call, f"{param}.tool_calls[{k}]")})
    return blocks


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
        raise _invalid(f"'{param}' must have an id and a function with a name", param)
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _invalid(f"'{param}.function.arguments' must be a JSON object", f"{param}.function.arguments")
    return {"toolUseId": str(call["id"]), "name": function["name"], "input": parsed}


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise _invalid(f"'{param}.tool_call_id' is required for a tool message", f"{param}.tool_call_id")
    text = "".join(_texts(message.get("content"), param))
    # Converse rejects an empty text block; an empty tool result still has to be answered.
    return {"toolResult": {"toolUseId": tool_call_id, "content": [{"text": text or "(empty)"}]}}


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, key, high in (("temperature", "temperature", 2), ("top_p", "topP", 1)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            raise _invalid(f"'{name}' must be a number from 0 to {high}", name)
        config[key] = value
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _invalid(f"'{name}' must be a whole number of at least 1", name)
        config.setdefault("maxTokens", value)  # max_completion_tokens (the newer name) wins
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise _invalid("'stop' must be a string or an array of strings", "stop")
        if stop:
            config["stopSequences"] = stop
    return config


def _tool_config(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _invalid("'tools' must be an array", "tools")
    specs = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _invalid(f"'tools[{i}]' must be a function tool with a name", f"tools[{i}]")
        spec: dict[str, Any] = {
            "name": function["name"],
            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    if not specs:
        return None
    tool_choice = body.get("tool_choice")
    if tool_choice == "none":
        # Converse cannot forbid tool use; dropping the tools does, unless the conversation
        # already holds tool blocks (then Converse needs the tools declared).
        has_tool_blocks = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
        return {"tools": specs} if has_tool_blocks else None
    config: dict[str, Any] = {"tools": specs}
    if tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise _invalid("'tool_choice' must name a function", "tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif tool_choice not in (None, "auto"):
        raise _invalid("'tool_choice' must be none, auto, required or a named function", "tool_choice")
    return config


# --- response -------------------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def usage(token_usage: dict[str, Any] | None) -> dict[str, int]:
    token_usage = token_usage or {}
    prompt = int(token_usage.get("inputTokens") or 0)
    completion = int(token_usage.get("outputTokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(token_usage.get("totalTokens") or prompt + completion),
    }


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def add_usage(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {key: total.get(key, 0) + more.get(key, 0) for key in USAGE_KEYS}


def choice(response: dict[str, Any], index: int) -> dict[str, Any]:
    """One OpenAI choice from a Converse response."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    texts = [block["text"] for block in content if "text" in block]
    tool_calls = [
        {
            "id": block["toolUse"]["toolUseId"],
            "type": "function",
            "function": {
                "name": block["toolUse"]["name"],
                "arguments": json.dumps(block["toolUse"].get("input") or {}),
            },
        }
        for block in content
        if "toolUse" in block
    ]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    message["refusal"] = None
    return {
        "index": index,
        "message": message,
        "finish_reason": finish_reason(response.get("stopReason")),
        "logprobs": None,
    }


def chat_completion(responses: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The OpenAI `chat.completion` for one Converse response per choice."""
    total: dict[str, int] = {}
    for response in responses:
        total = add_usage(total, usage(response.get("usage")))
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice(response, index) for index, response in enumerate(responses)],
        "usage": total,
        "system_fingerprint": None,
    }

"""A fake Amazon Bedrock runtime: a real aiohttp server on 127.0.0.1 speaking the Converse API.

It answers `POST /model/{modelId}/converse` with Converse JSON and
`POST /model/{modelId}/converse-stream` with the binary `application/vnd.amazon.eventstream`
framing that botocore decodes (see `event_message`). boto3 reaches it through `endpoint_url`
(or AWS_ENDPOINT_URL_BEDROCK_RUNTIME) with any credentials; the signature is not checked but
the request is recorded with its headers.

Usage in a test:

    from testbed.bedrock_runtime import FakeBedrock, Answer, Fail, StreamFail, Hang

    with FakeBedrock() as fake:                              # fake.url: http://127.0.0.1:<port>
        fake.enqueue(Answer("Hi", tool_uses=[...], stop_reason="tool_use"))
        fake.enqueue(Fail("ThrottlingException"))           # status from botocore's model (429)
        fake.enqueue(StreamFail("throttlingException", after=3))  # exception event mid-stream
        fake.enqueue(Answer("a b c", hold_after=2, gate=gate))  # 2 events, then wait for gate.set()
        fake.enqueue(Hang(5))
        fake.requests[-1].model_id, fake.requests[-1].body["messages"], fake.requests[-1].operation

Queued behaviours are used first in, first out; then the default answer: the text
`Hello from <model id>.` (streamed word by word), with token counts of the words sent and
received. `delay` pauses before every answer, `stream_pause` between stream events.

From the command line (the benchmark runs it this way, in its own process):

    python -m testbed.bedrock_runtime --port 0 --delay 0.05

prints `ready http://127.0.0.1:<port>` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import re
import struct
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from testbed.aiohttp_server import FakeServer, command_line, count_words, serve_until_signalled

# HTTP status of each Bedrock runtime error, as botocore's service model for bedrock-runtime says.
ERROR_STATUSES = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream)$")


# --- behaviours a test can queue ---------------------------------------------------------------


@dataclass
class Answer:
    """Answer normally with `text` and tool uses (`{"toolUseId", "name", "input"}` each)."""

    text: str | None = None  # None: the default text
    tool_uses: list[dict] = field(default_factory=list)
    stop_reason: str | None = None  # None: tool_use when there are tool uses, else end_turn
    input_tokens: int | None = None
    output_tokens: int | None = None
    chunks: list[str] | None = None  # how a stream splits the text (default: word by word)
    hold_after: int | None = None  # stream this many events, then wait until `gate` is set
    gate: threading.Event = field(default_factory=threading.Event)


@dataclass
class Fail:
    """Answer with Bedrock error `code` (`x-amzn-ErrorType` and a JSON `message`)."""

    code: str
    message: str = "The fake Bedrock failed on purpose."
    status: int | None = None  # None: the status botocore's model gives the code


@dataclass
class StreamFail:
    """Open the stream, send `after` events, then an exception event `code` (lower camel case)."""

    code: str = "throttlingException"
    message: str = "The fake Bedrock failed mid-stream on purpose."
    after: int = 2


@dataclass
class Hang:
    """Accept the request and answer nothing for `seconds`."""

    seconds: float = 3600.0


Behaviour = Answer | Fail | StreamFail | Hang


@dataclass
class Recorded:
    operation: str  # "converse" or "converse-stream"
    model_id: str  # URL-decoded
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON


# --- the event-stream framing ---------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # name length (1 byte), name, value type 7 (string), value length (2 bytes), value
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One `application/vnd.amazon.eventstream` message.

    Prelude: total length and headers length (4 bytes each, big-endian), then the CRC32 of those
    8 bytes; then the headers, the payload, and the CRC32 of everything before it.
    """
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event(event_type: str, payload: dict) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return event_message(headers, json.dumps(payload).encode())


def exception_event(code: str, message: str) -> bytes:
    headers = {":exception-type": code, ":content-type": "application/json", ":message-type": "exception"}
    return event_message(headers, json.dumps({"message": message}).encode())


# --- the server ----------------------------------------------------------------------------------


class FakeBedrock(FakeServer[Recorded]):
    thread_name = "fake-bedrock"

    def __init__(
        self, *, delay: float = 0.0, stream_pause: float = 0.0, port: int = 0, record: bool = True
    ) -> None:
        super().__init__(port=port, record=record)
        self.delay = delay
        self.stream_pause = stream_pause
        self._queue: collections.deque[Behaviour] = collections.deque()

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    # --- request handling ------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded | web.Response:
        # The raw path: an ARN model id holds %2F, which must not split the path.
        match = _PATH.match(request.raw_path.split("?", 1)[0])
        if request.method != "POST" or match is None:
            return _error("UnknownOperationException", f"No such operation: {request.raw_path}", 404)
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error("SerializationException", "The request body is not JSON.", 400)
        return Recorded(
            match["operation"],
            unquote(match["model"]),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )

    async def _answer(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        with self._lock:
            behaviour = self._queue.popleft() if self._queue else Answer()
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            return _error("ModelTimeoutException", "The fake Bedrock hung on purpose.", 408)
        if isinstance(behaviour, Fail):
            status = behaviour.status or ERROR_STATUSES.get(behaviour.code, 400)
            return _error(behaviour.code, behaviour.message, status)
        answer = behaviour if isinstance(behaviour, Answer) else Answer()
        if recorded.operation == "converse":
            return web.json_response(_converse_response(recorded, answer))
        return await self._stream(request, recorded, answer, behaviour)

    async def _stream(
        self, request: web.Request, recorded: Recorded, answer: Answer, behaviour: Behaviour
    ) -> web.StreamResponse:
        events = _stream_events(recorded, answer)
        response = web.StreamResponse(
            headers={"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": "fake"}
        )
        await response.prepare(request)
        for number, message in enumerate(events):
            if isinstance(behaviour, StreamFail) and number == behaviour.after:
                await response.write(exception_event(behaviour.code, behaviour.message))
                break
            if answer.hold_after is not None and number == answer.hold_after:
                await asyncio.get_running_loop().run_in_executor(None, answer.gate.wait, 30)
            elif number and self.stream_pause:
                await asyncio.sleep(self.stream_pause)
            await response.write(message)
        await response.write_eof()
        return response


# --- Converse shapes -------------------------------------------------------------------------------


def _error(code: str, message: str, status: int) -> web.Response:
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return web.json_response({"message": message}, status=status, headers=headers)


def _words(value: Any) -> int:
    return count_words(value, skip_keys={"bytes"})  # an image's bytes are no words


def _text(recorded: Recorded, answer: Answer) -> str:
    return f"Hello from {recorded.model_id}." if answer.text is None else answer.text


def _usage(recorded: Recorded, answer: Answer) -> dict:
    prompt = answer.input_tokens
    if prompt is None:
        prompt = _words(recorded.body.get("messages")) + _words(recorded.body.get("system"))
    completion = answer.output_tokens if answer.output_tokens is not None else _words(_text(recorded, answer))
    return {"inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion}


def _stop_reason(answer: Answer) -> str:
    return answer.stop_reason or ("tool_use" if answer.tool_uses else "end_turn")


def _converse_response(recorded: Recorded, answer: Answer) -> dict:
    text = _text(recorded, answer)
    content: list[dict] = [{"text": text}] if text else []
    content += [{"toolUse": tool_use} for tool_use in answer.tool_uses]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _stop_reason(answer),
        "usage": _usage(recorded, answer),
        "metrics": {"latencyMs": 1},
    }


def _stream_events(recorded: Recorded, answer: Answer) -> list[bytes]:
    text = _text(recorded, answer)
    chunks = answer.chunks
    if chunks is None:
        chunks = re.findall(r"\s*\S+", text) if text else []
    events = [event("messageStart", {"role": "assistant"})]
    index = 0
    if chunks:
        events += [
            event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": chunk}})
            for chunk in chunks
        ]
        events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for tool_use in answer.tool_uses:
        start = {"toolUse": {"toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}}
        events.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        arguments = json.dumps(tool_use.get("input") or {})
        middle = len(arguments) // 2  # two fragments, as a model streams a tool call's input
        for fragment in (arguments[:middle], arguments[middle:]):
            delta = {"toolUse": {"input": fragment}}
            events.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    events.append(event("messageStop", {"stopReason": _stop_reason(answer)}))
    events.append(event("metadata", {"usage": _usage(recorded, answer), "metrics": {"latencyMs": 1}}))
    return events


def image_bytes(block: dict) -> bytes:
    """The bytes of an image content block as recorded (JSON carries them base64-encoded)."""
    return base64.b64decode(block["image"]["source"]["bytes"])


# --- command line (used by the benchmark) ---------------------------------------------------------


def main() -> None:
    args = command_line("Serve the fake Bedrock runtime until SIGTERM.").parse_args()
    serve_until_signalled(
        FakeBedrock(delay=args.delay, stream_pause=args.stream_pause, port=args.port, record=False)
    )


if __name__ == "__main__":
    main()

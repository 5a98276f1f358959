"""A fake OpenAI-compatible upstream: a real aiohttp server on 127.0.0.1, in a background thread.

Usage in a test:

    from testbed.openai_upstream import FakeOpenAI, Reply, Fail, Hang, Stream

    with FakeOpenAI(api_key="sk-provider") as fake:      # free port; fake.url ends in /v1
        settings = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-provider"}
        fake.enqueue(Reply(["answer 1", "answer 2"]))   # next request: these two choices
        fake.enqueue(Fail(429, "Slow down", headers={"Retry-After": "0"}), path="/chat/completions")
        fake.enqueue(Stream(pause=0.2, close_after=2))   # stream 2 chunks, then drop the connection
        fake.enqueue(Stream(close_after=1, partial=b'data: {"id": "x", "obj'))  # ...inside an event
        fake.enqueue(Hang(5))                            # answer nothing for 5 s
        fake.responder = lambda request: Reply([...])    # or decide per request (None: default)
        ...
        fake.requests[-1].headers["authorization"]       # every request is recorded
        fake.requests[-1].body["messages"]               # (parsed JSON body, raw bytes in .raw)
        assert fake.wait_for_disconnect(timeout=5)       # a client closed a stream or a hang

Queued behaviours are used first-in first-out, each by the first request whose path ends with its
`path` (any path when None); then `responder`; then the default answer of the route. Defaults:
chat/completions answers `n` choices (streamed when `"stream": true`, with a usage chunk when
`stream_options.include_usage` is set), and embeddings, responses, completions, moderations,
models and models/<id> answer in the OpenAI shapes; images, audio, files and batches too
(`testbed.openai_media`, its state in `fake.media`; each line of a batch is answered by
`responder` as the same chat would be, without being recorded as a request). Streamed chat chunks
are OpenAI's: every choice has `finish_reason` (null until the last content chunk), and once usage
was asked for every chunk has `"usage": null` but the final usage chunk. Embeddings come as
base64 (little-endian float32) when the request says `encoding_format: base64`, as the Node SDK's
does by default.
`delay` pauses before every answer, `stream_pause` between streamed chunks, `stream_chunks` sets
how many content chunks a default stream has. `api_key` (when set) must arrive as
`Authorization: Bearer <key>`, else 401 quoting the key sent, masked, as OpenAI does; `bearer`
(when set) must accept the token sent as `Authorization: Bearer <token>`, else 401 as Vertex AI
answers a bad access token (with `testbed.google_token.FakeGoogleToken.accepts`, the fake is Vertex AI's
OpenAI-compatible endpoint).
`gzip="asked"` compresses answers (streams included) for a request whose Accept-Encoding allows
gzip; `gzip="always"` compresses whatever the request asked, as a misbehaving upstream (or a
proxy in front of one) does.

From the command line (the benchmark runs it this way, in its own process):

    python -m testbed.openai_upstream --port 0 --delay 0.05 --stream-pause 1 --stream-chunks 10

prints `ready http://127.0.0.1:<port>/v1` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gzip
import json
import ssl
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testbed.aiohttp_server import FakeServer, command_line, count_words, serve_until_signalled
from testbed.openai_media import MediaState, media_answer

DEFAULT_CONTENT = "Hello from the fake upstream."
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "omni-moderation-latest")


# --- behaviours a test can queue ---------------------------------------------------------------


@dataclass
class Reply:
    """Answer normally: chat/completions and completions get one choice per content."""

    contents: list[str] | None = None
    usage: dict | None = None  # overrides the computed usage
    body: dict | None = None  # a whole JSON body to send instead of the route's own
    delay: float = 0.0


@dataclass
class Fail:
    """Answer `status` with an OpenAI-shaped error (or `raw` bytes as the body)."""

    status: int
    message: str = "The fake upstream failed on purpose."
    type: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


@dataclass
class Hang:
    """Accept the request and answer nothing for `seconds`."""

    seconds: float = 3600.0


@dataclass
class Stream:
    """Stream `contents` (one chunk each), `pause` seconds apart; `close_after` chunks, then drop.

    With `close_after`, `partial` is written after those chunks, before the drop: the start of an
    event the upstream never finishes (`b'data: {"id": "x", "obj'`). `stall` is how long the
    upstream then stays silent before it drops the connection (a proxy's read timeout comes first
    when it is longer).
    """

    contents: list[str] | None = None
    pause: float | None = None  # None: the fake's stream_pause
    usage: bool | None = None  # None: as the request's stream_options.include_usage says
    close_after: int | None = None
    partial: bytes | None = None
    stall: float = 0.0


Behaviour = Reply | Fail | Hang | Stream


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    raw: bytes
    peer: Any = None  # the client's (host, port): one per connection


# --- the server ----------------------------------------------------------------------------------


class FakeOpenAI(FakeServer[Recorded]):
    thread_name = "fake-openai"

    def __init__(
        self,
        *,
        delay: float = 0.0,
        stream_pause: float = 0.0,
        stream_chunks: int | None = None,
        api_key: str | None = None,
        port: int = 0,
        record: bool = True,
        tls: ssl.SSLContext | None = None,
        gzip: str | None = None,
        bearer: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(port=port, record=record, tls=tls)
        if gzip not in (None, "asked", "always"):
            raise ValueError(f"gzip must be None, 'asked' or 'always', not {gzip!r}")
        self.gzip = gzip
        self.delay = delay
        self.stream_pause = stream_pause
        self.stream_chunks = stream_chunks
        self.api_key = api_key
        self.bearer = bearer
        self.responder: Callable[[Recorded], Behaviour | None] | None = None
        self._queue: collections.deque[tuple[str | None, Behaviour]] = collections.deque()
        self.media = MediaState()  # files, batches and the speech pacing (testbed.openai_media)
        self.media.answer_line = self._answer_batch_line

    @property
    def url(self) -> str:
        return f"{super().url}/v1"

    # --- scripting -------------------------------------------------------------------------

    def enqueue(self, *behaviours: Behaviour, path: str | None = None) -> None:
        with self._lock:
            self._queue.extend((path, b) for b in behaviours)

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path)]

    def _next_behaviour(self, recorded: Recorded) -> Behaviour | None:
        with self._lock:
            for index, (path, behaviour) in enumerate(self._queue):
                if path is None or recorded.path.endswith(path):
                    del self._queue[index]
                    return behaviour
        return self.responder(recorded) if self.responder else None

    def _answer_batch_line(self, body: dict) -> tuple[int, dict] | None:
        """A batch line's chat body answered as that chat would be, when `responder` decides
        (a Reply or a Fail); None leaves the line to the batch's default answer."""
        if self.responder is None:
            return None
        recorded = Recorded("POST", "/v1/chat/completions", {}, {}, body, json.dumps(body).encode())
        behaviour = self.responder(recorded)
        if isinstance(behaviour, Fail):
            error = _error(behaviour.status, behaviour.message, behaviour.type, behaviour.code)
            return behaviour.status, json.loads(error.body)
        if not isinstance(behaviour, Reply):
            return None
        if behaviour.body is not None:
            return 200, behaviour.body
        answer = self._default_answer("/chat/completions", recorded, body, behaviour)
        assert isinstance(answer, web.Response)
        return 200, json.loads(answer.body)

    # --- request handling ------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return Recorded(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            raw,
            request.transport.get_extra_info("peername") if request.transport else None,
        )

    def _compresses(self, recorded: Recorded) -> bool:
        if self.gzip == "always":
            return True
        if self.gzip != "asked":
            return False
        for coding in recorded.headers.get("accept-encoding", "").split(","):
            name, _, params = coding.partition(";")
            if name.strip().lower() in ("gzip", "*") and params.replace(" ", "") not in ("q=0", "q=0.0"):
                return True
        return False

    async def _answer(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        response = await self._answer_plain(request, recorded)
        if self._compresses(recorded) and not response.prepared and isinstance(response, web.Response):
            response.body = gzip.compress(response.body or b"")
            response.headers["Content-Encoding"] = "gzip"
        return response

    async def _answer_plain(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        if self.api_key and recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, _refusal(recorded.headers.get("authorization", "")), code="invalid_api_key")
        if self.bearer and not self.bearer(recorded.headers.get("authorization", "").removeprefix("Bearer ")):
            return _error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                code="UNAUTHENTICATED",
            )
        behaviour = self._next_behaviour(recorded)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(behaviour, Fail):
            if behaviour.raw is not None:
                return web.Response(status=behaviour.status, body=behaviour.raw, headers=behaviour.headers)
            return _error(
                behaviour.status, behaviour.message, behaviour.type, behaviour.code, behaviour.headers
            )
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            return _error(504, "The fake upstream hung on purpose.")
        body = recorded.body if isinstance(recorded.body, dict) else {}
        route = recorded.path.removeprefix("/v1")
        media = await media_answer(self.media, request, route, recorded.raw)
        if media is not None:
            return media
        wants_stream = body.get("stream") is True and route in (
            "/chat/completions",
            "/completions",
            "/responses",
        )
        reply = behaviour if isinstance(behaviour, Reply) else Reply()
        if isinstance(behaviour, Stream):
            return await self._stream(request, recorded, route, body, behaviour)
        if wants_stream and reply.body is None:
            return await self._stream(request, recorded, route, body, Stream(contents=reply.contents))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.body is not None:
            return web.json_response(reply.body)
        answer = self._default_answer(route, recorded, body, reply)
        if answer is None:
            return _error(404, f"Unknown path {recorded.path} on the fake upstream.", code="unknown_url")
        return answer

    def _default_answer(
        self, route: str, recorded: Recorded, body: dict, reply: Reply
    ) -> web.StreamResponse | None:
        model = body.get("model", "gpt-4o-mini")
        prompt_tokens = _prompt_tokens(body)
        if route == "/chat/completions" and recorded.method == "POST":
            contents = reply.contents or [DEFAULT_CONTENT] * max(1, int(body.get("n") or 1))
            completion_tokens = sum(count_words(c) for c in contents)
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                        for i, content in enumerate(contents)
                    ],
                    "usage": reply.usage or _usage(prompt_tokens, completion_tokens),
                }
            )
        if route == "/completions" and recorded.method == "POST":
            contents = reply.contents or [DEFAULT_CONTENT] * max(1, int(body.get("n") or 1))
            return web.json_response(
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {"index": i, "text": c, "logprobs": None, "finish_reason": "stop"}
                        for i, c in enumerate(contents)
                    ],
                    "usage": reply.usage or _usage(prompt_tokens, sum(count_words(c) for c in contents)),
                }
            )
        if route == "/embeddings" and recorded.method == "POST":
            inputs = _inputs(body)
            encode = _base64_floats if body.get("encoding_format") == "base64" else list
            return web.json_response(
                {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": encode(_vector(str(text)))}
                        for i, text in enumerate(inputs)
                    ],
                    "model": model,
                    "usage": reply.usage or {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                }
            )
        if route == "/responses" and recorded.method == "POST":
            text = (reply.contents or [DEFAULT_CONTENT])[0]
            return web.json_response(_response_object(model, text, prompt_tokens, reply.usage))
        if route == "/moderations" and recorded.method == "POST":
            inputs = _inputs(body)
            return web.json_response(
                {
                    "id": "modr-fake",
                    "model": body.get("model", "omni-moderation-latest"),
                    "results": [
                        {
                            "flagged": False,
                            "categories": {"violence": False},
                            "category_scores": {"violence": 0.0},
                        }
                        for _ in inputs
                    ],
                }
            )
        if route == "/models" and recorded.method == "GET":
            return web.json_response({"object": "list", "data": [_model(m) for m in MODELS]})
        if route.startswith("/models/") and recorded.method == "GET":
            name = route.removeprefix("/models/")
            if name in MODELS:
                return web.json_response(_model(name))
            return _error(404, f"The model '{name}' does not exist", code="model_not_found")
        return None

    async def _stream(
        self, request: web.Request, recorded: Recorded, route: str, body: dict, behaviour: Stream
    ) -> web.StreamResponse:
        contents = behaviour.contents
        if contents is None:
            words = (
                [f" word{i}" for i in range(self.stream_chunks)]
                if self.stream_chunks
                else ["Hello", " from", " the", " fake", " upstream."]
            )
            contents = words
        pause = self.stream_pause if behaviour.pause is None else behaviour.pause
        include_usage = behaviour.usage
        if include_usage is None:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        model = body.get("model", "gpt-4o-mini")
        prompt_tokens = _prompt_tokens(body)
        events = _stream_events(route, model, contents, prompt_tokens, include_usage)

        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        # Each event is flushed out of the compressor as it is written, as a gzipping server
        # that streams must, so a compressed stream still arrives event by event.
        compressor = zlib.compressobj(wbits=31) if self._compresses(recorded) else None
        if compressor is not None:
            headers["Content-Encoding"] = "gzip"

        def packed(data: bytes) -> bytes:
            if compressor is None:
                return data
            return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)

        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for number, event in enumerate(events):
            if behaviour.close_after is not None and number >= behaviour.close_after:
                if behaviour.partial:
                    await response.write(packed(behaviour.partial))
                if behaviour.stall:
                    await asyncio.sleep(behaviour.stall)
                # Drop the connection mid-stream, without the terminating chunk.
                request.transport.close()
                return response
            if number and pause:
                await asyncio.sleep(pause)
            await response.write(packed(event))
        if compressor is not None:
            await response.write(compressor.flush())
        await response.write_eof()
        return response


# --- OpenAI shapes ---------------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    type: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    kind = type or {
        400: "invalid_request_error",
        401: "invalid_request_error",
        404: "invalid_request_error",
    }.get(status, "rate_limit_error" if status == 429 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _refusal(authorization: str) -> str:
    """OpenAI's 401 message, which quotes the start and end of the key it refused."""
    key = authorization.removeprefix("Bearer ").strip()
    if not key:
        return "You didn't provide an API key."
    masked = f"{key[:4]}{'*' * max(0, len(key) - 8)}{key[-4:]}" if len(key) > 8 else key
    return f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."


def _prompt_tokens(body: dict) -> int:
    return count_words(body.get("messages") or body.get("input") or body.get("prompt"))


def _inputs(body: dict) -> list:
    """The `input` of an embeddings or moderations request: one item or a list of them (a list of
    typed parts, `{"type": "image_url", ...}` or `{"type": "text", ...}`, is one moderation input)."""
    inputs = body.get("input")
    if (
        isinstance(inputs, list)
        and inputs
        and all(isinstance(item, dict) and "type" in item for item in inputs)
    ):
        return [inputs]
    return inputs if isinstance(inputs, list) else [inputs]


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _vector(text: str) -> list[float]:
    seed = sum(map(ord, text)) or 1
    return [((seed * (i + 7)) % 1000) / 1000 for i in range(8)]


def _base64_floats(vector: list[float]) -> str:
    """An embedding as `encoding_format: base64` sends it: little-endian float32s, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}


def _response_object(model: str, text: str, prompt_tokens: int, usage: dict | None = None) -> dict:
    output_tokens = count_words(text)
    return {
        "id": "resp-fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg-fake",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": usage
        or {
            "input_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
        },
    }


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def _stream_events(
    route: str, model: str, contents: list[str], prompt_tokens: int, usage: bool
) -> list[bytes]:
    completion_tokens = sum(count_words(c) for c in contents)
    created = int(time.time())
    if route == "/responses":
        text = "".join(contents)
        events = [
            _sse(
                {"type": "response.created", "response": {"id": "resp-fake", "model": model}},
                "response.created",
            )
        ]
        events += [
            _sse({"type": "response.output_text.delta", "delta": c}, "response.output_text.delta")
            for c in contents
        ]
        done = _response_object(model, text, prompt_tokens)
        events.append(_sse({"type": "response.completed", "response": done}, "response.completed"))
        return events
    if route == "/completions":
        base = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": model}
        choices = [{"index": 0, "text": c, "logprobs": None, "finish_reason": None} for c in contents]
        choices.append({"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"})
    else:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model}
        deltas = [{"role": "assistant", "content": ""}] + [{"content": c} for c in contents]
        choices = [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None} for d in deltas]
        choices.append({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"})
    # Once usage was asked for, OpenAI adds `"usage": null` to every chunk but the last.
    unused = {"usage": None} if usage else {}
    events = [_sse({**base, "choices": [choice], **unused}) for choice in choices]
    if usage:
        events.append(_sse({**base, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}))
    events.append(_sse("[DONE]"))
    return events


# --- command line (used by the benchmark) ---------------------------------------------------------


def _is_judge(request: Recorded) -> bool:
    messages = request.body.get("messages") if isinstance(request.body, dict) else None
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
    return "<text>" in str(first.get("content")) or "between <text> and </text>" in str(first.get("content"))


def main() -> None:
    parser = command_line("Serve the fake OpenAI upstream until SIGTERM.")
    parser.add_argument("--stream-chunks", type=int, default=None, help="content chunks in a default stream")
    parser.add_argument("--fail", type=int, default=None, metavar="STATUS", help="answer every request so")
    args = parser.parse_args()
    fake = FakeOpenAI(
        delay=args.delay,
        stream_pause=args.stream_pause,
        stream_chunks=args.stream_chunks,
        port=args.port,
        record=False,
    )
    if args.fail is not None:
        status = args.fail
        fake.responder = lambda request: Fail(status, "This deployment always fails (benchmark).")
    else:  # a safety judge (service/safety/prompts/) finds every benchmark text fine
        fake.responder = lambda request: Reply(["OK"]) if _is_judge(request) else None
    serve_until_signalled(fake)


if __name__ == "__main__":
    main()

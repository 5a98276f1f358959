"""The fake upstream's image, audio, file and batch routes (`testbed.openai_upstream.FakeOpenAI`
answers them through `media_answer`), in OpenAI's shapes.

- `POST /images/generations` and `/images/edits`: `n` images of `image_bytes` (PNG_BYTES unless
  a test sets another), as `b64_json` (or `url` when `response_format` asks), with the request's
  size and quality;
- `POST /audio/transcriptions` and `/translations`: `transcript`, by default "Heard <n> bytes.", in the asked
  `response_format` (json, verbose_json with a duration of one second per BYTES_PER_SECOND, text,
  srt, vtt) or, with `stream=true`, `transcript.text.delta` and `transcript.text.done` events;
- `POST /audio/speech`: `speech_chunks` blocks of SPEECH_CHUNK bytes of "audio", `speech_pause`
  seconds apart, so a test can see the first ones arrive before the last is sent;
- `/files` (upload, list, retrieve, content, delete) and `/batches` (create, retrieve, list,
  cancel): kept in memory; a batch completes on its `batch_polls`-th retrieve, its output file
  holding a chat completion (with usage) for each line of its input file. Each line is answered
  by `answer_line` (FakeOpenAI's: the chat `responder`, as if the line's body came as a chat)
  when it says how; a refused line goes to the batch's error file with its status and error body,
  as OpenAI's does. Set `fail_batch` to the `errors` a batch should fail validation with.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from werkzeug.formparser import MultiPartParser
from werkzeug.http import parse_options_header

PNG_BYTES = b"\x89PNG\r\n\x1a\nfake image"
BYTES_PER_SECOND = 16000  # a recording's duration in the fake's answers: 128 kbit/s
SPEECH_CHUNK = 32768
BATCH_PROMPT_TOKENS = 20  # each batch answer's usage
BATCH_COMPLETION_TOKENS = 10


@dataclass
class MediaState:
    files: dict[str, dict] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    numbers: Any = field(default_factory=itertools.count)
    speech_chunks: int = 4
    speech_pause: float = 0.3
    batch_polls: int = 1  # the retrieve on which a batch completes
    # (status, body) for a line's chat body, or None for the default answer (FakeOpenAI sets it)
    answer_line: Any = None
    fail_batch: list[dict] | None = None  # the `errors` a batch fails with (status `failed`)
    image_bytes: bytes = PNG_BYTES  # what every generated image holds
    transcript: str | None = None  # what every transcription says (None: "Heard <n> bytes.")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status)


def _missing(kind: str, object_id: str) -> web.Response:
    body = {"message": f"No such {kind} object: {object_id}", "type": "invalid_request_error"}
    return _json({"error": {**body, "param": "id", "code": None}}, 404)


async def media_answer(
    state: MediaState, request: web.Request, route: str, raw: bytes
) -> web.StreamResponse | None:
    """The answer of a media route (`raw` the request's body as recorded), or None for any other."""
    method = request.method
    if route in ("/images/generations", "/images/edits") and method == "POST":
        return _images(state, _fields(request, raw))
    if route in ("/audio/transcriptions", "/audio/translations") and method == "POST":
        return await _transcription(state, request, _fields(request, raw))
    if route == "/audio/speech" and method == "POST":
        return await _speech(state, request)
    if route.startswith("/files"):
        return await _files(state, request, route, raw)
    if route.startswith("/batches"):
        return await _batches(state, request, route, raw)
    return None


def _fields(request: web.Request, raw: bytes) -> dict[str, Any]:
    """A multipart body's fields and files (werkzeug's FileStorage), or a JSON body's members."""
    if request.content_type == "multipart/form-data":
        _, options = parse_options_header(request.headers.get("Content-Type", ""))
        boundary = options.get("boundary", "").encode()
        form, files = MultiPartParser().parse(io.BytesIO(raw), boundary, len(raw))
        return {**form.to_dict(), **files.to_dict()}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _images(state: MediaState, fields: dict) -> web.Response:
    count = int(fields.get("n") or 1)
    if fields.get("response_format") == "url":
        data = [{"url": f"https://images.example/fake-{i}.png"} for i in range(count)]
    else:
        data = [{"b64_json": base64.b64encode(state.image_bytes).decode()} for _ in range(count)]
    answer: dict[str, Any] = {"created": int(time.time()), "data": data}
    if str(fields.get("model", "")).startswith("gpt-image"):
        answer["size"] = fields.get("size") or "1024x1024"
        answer["quality"] = fields.get("quality") or "high"
    return _json(answer)


async def _transcription(state: MediaState, request: web.Request, fields: dict) -> web.StreamResponse:
    upload = fields.get("file")
    size = len(upload.read()) if upload is not None and hasattr(upload, "read") else 0
    text = state.transcript if state.transcript is not None else f"Heard {size} bytes."
    seconds = size / BYTES_PER_SECOND
    if str(fields.get("stream", "")).lower() == "true":
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split(" "):
            event = {"type": "transcript.text.delta", "delta": word + " "}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        done = {"type": "transcript.text.done", "text": text}
        await response.write(f"data: {json.dumps(done)}\n\n".encode())
        await response.write_eof()
        return response
    kind = fields.get("response_format") or "json"
    end = time.strftime("%H:%M:%S", time.gmtime(seconds))
    if kind == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if kind == "srt":
        return web.Response(text=f"1\n00:00:00,000 --> {end},500\n{text}\n\n", content_type="text/plain")
    if kind == "vtt":
        cue = f"00:00:00.000 --> {end}.500"
        return web.Response(text=f"WEBVTT\n\n{cue}\n{text}\n\n", content_type="text/plain")
    if kind == "verbose_json":
        return _json({"task": "transcribe", "language": "english", "duration": seconds, "text": text})
    return _json({"text": text})


async def _speech(state: MediaState, request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
    await response.prepare(request)
    for number in range(state.speech_chunks):
        if number:
            await asyncio.sleep(state.speech_pause)
        await response.write(bytes([number % 256]) * SPEECH_CHUNK)
    await response.write_eof()
    return response


async def _files(state: MediaState, request: web.Request, route: str, raw: bytes) -> web.Response:
    parts = route.strip("/").split("/")  # files, files/<id>, files/<id>/content
    if len(parts) == 1 and request.method == "POST":
        form = _fields(request, raw)
        upload = form.get("file")
        content = upload.read() if upload is not None and hasattr(upload, "read") else b""
        file_id = f"file-{next(state.numbers)}"
        state.contents[file_id] = content
        state.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": getattr(upload, "filename", "upload"),
            "purpose": form.get("purpose", "batch"),
        }
        return _json(state.files[file_id])
    if len(parts) == 1:
        return _json({"object": "list", "data": list(state.files.values()), "has_more": False})
    file_id = parts[1]
    if file_id not in state.files:
        return _missing("File", file_id)
    if len(parts) == 3:
        return web.Response(body=state.contents[file_id], content_type="application/octet-stream")
    if request.method == "DELETE":
        del state.files[file_id]
        return _json({"id": file_id, "object": "file", "deleted": True})
    return _json(state.files[file_id])


async def _batches(state: MediaState, request: web.Request, route: str, raw: bytes) -> web.Response:
    parts = route.strip("/").split("/")  # batches, batches/<id>, batches/<id>/cancel
    if len(parts) == 1 and request.method == "POST":
        body = json.loads(raw)
        if body.get("input_file_id") not in state.files:
            return _missing("File", str(body.get("input_file_id")))
        batch_id = f"batch_{next(state.numbers)}"
        lines = state.contents[body["input_file_id"]].splitlines()
        state.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        return _json(state.batches[batch_id])
    if len(parts) == 1:
        return _json({"object": "list", "data": list(state.batches.values()), "has_more": False})
    batch_id = parts[1]
    batch = state.batches.get(batch_id)
    if batch is None:
        return _missing("Batch", batch_id)
    if len(parts) == 3 and request.method == "POST":
        batch["status"] = "cancelled"
        return _json(batch)
    if batch["status"] not in ("completed", "cancelled", "failed"):
        state.polls[batch_id] = state.polls.get(batch_id, 0) + 1
        if state.fail_batch is not None:
            batch.update(status="failed", errors={"object": "list", "data": state.fail_batch})
        elif state.polls[batch_id] >= state.batch_polls:
            _complete(state, batch)
        else:
            batch["status"] = "in_progress"
            batch["request_counts"]["completed"] = batch["request_counts"]["total"] // 2
    return _json(batch)


def _complete(state: MediaState, batch: dict) -> None:
    """Answer each line of the input file with a chat completion, in an output file; refused
    lines go to an error file."""
    out, errors = [], []
    for line in state.contents[batch["input_file_id"]].splitlines():
        if not line.strip():
            continue
        asked = json.loads(line)
        custom_id = asked.get("custom_id")
        answered = state.answer_line(asked.get("body") or {}) if state.answer_line else None
        status, body = answered or (200, _default_line_answer(asked))
        answer = {"id": f"req-{custom_id}", "custom_id": custom_id}
        into = out if status < 400 else errors
        into.append(json.dumps({**answer, "response": {"status_code": status, "body": body}, "error": None}))
    output_id = _stored_file(state, "batch_output.jsonl", out)
    error_id = _stored_file(state, "batch_errors.jsonl", errors) if errors else None
    batch.update(status="completed", output_file_id=output_id, error_file_id=error_id)
    batch["request_counts"].update(completed=len(out), failed=len(errors))


def _default_line_answer(asked: dict) -> dict:
    usage = {
        "prompt_tokens": BATCH_PROMPT_TOKENS,
        "completion_tokens": BATCH_COMPLETION_TOKENS,
        "total_tokens": BATCH_PROMPT_TOKENS + BATCH_COMPLETION_TOKENS,
    }
    return {
        "id": "chatcmpl-batch",
        "object": "chat.completion",
        "model": asked.get("body", {}).get("model", "gpt-4o-mini"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": json.dumps({"grade": "pass"})},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def _stored_file(state: MediaState, name: str, lines: list[str]) -> str:
    file_id = f"file-{next(state.numbers)}"
    state.contents[file_id] = ("\n".join(lines) + "\n").encode() if lines else b""
    state.files[file_id] = {
        "id": file_id,
        "object": "file",
        "bytes": len(state.contents[file_id]),
        "created_at": int(time.time()),
        "filename": name,
        "purpose": "batch_output",
    }
    return file_id

"""Grading through the provider's Batch API (`--batch`): every request of the run in one batch, at
the batch price (half the listed one at OpenAI), answered within a day instead of at once.

1. The requests are collected by running the grader (`service.assessment`) with a `complete` that
   keeps each chat body and answers nothing, so they are exactly the bodies a normal run sends.
2. Those the answer cache cannot answer become the lines of a JSON Lines file (`custom_id`: the
   body's cache key), uploaded with purpose `batch`; one batch is made of it (24h window).
3. The batch is polled, the progress bar counting its finished requests, until it is completed,
   failed, expired or cancelled. Ctrl-C cancels it.
4. Its output and error files are read into answers by `custom_id`, and the run grades from them
   through the answer cache as a normal run does (`answers`), so the report, measures, counts and
   cache are the same. A refused request fails its student as the same refusal would in a normal
   run; a failed batch is a `BatchFailed` naming it and its errors.

The calls go to the model's (first) deployment, an OpenAI-compatible upstream: OpenAI itself, or
this proxy's `/v1`, where files and batches belong to the client whose key the lab holds.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lab.cache import AnswerCache, cache_key
from lab.progress import Progress
from service.core.errors import ProviderBadAnswer, ProviderError
from service.core.responses import json_bytes
from service.gateway.providers.openai import OpenAICompatible
from service.gateway.providers.openai.errors import status_error

ENDPOINT = "/v1/chat/completions"
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
FIRST_POLL, LONGEST_POLL = 1.0, 60.0  # seconds between polls: doubling from the first to the longest
NOTHING_USABLE: dict[str, Any] = {"choices": []}  # what the collecting pass answers
Headers = dict[str, str] | None
INPUT_NAME = "assessment-batch.jsonl"


class BatchFailed(Exception):
    """The provider refused the batch or one of its files, or the batch failed; one line."""


@dataclass
class BatchAnswers:
    """What a batch answered: each request's answer or its failure, by cache key."""

    batch_id: str | None = None
    status: str = "not sent"  # no batch was needed: every answer was cached
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, ProviderError] = field(default_factory=dict)
    requests: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"id": self.batch_id, "status": self.status, "requests": self.requests}

    def complete(self, key_of: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The grader's `complete` that answers from the batch (wrap it in the answer cache)."""

        def complete(body: dict[str, Any]) -> dict[str, Any]:
            key = key_of(body)
            if key in self.answers:
                return self.answers[key]
            if key in self.failures:
                raise self.failures[key]
            raise ProviderBadAnswer(f"The batch {self.batch_id} ended {self.status} without answering this.")

        return complete


class Collector:
    """A grader `complete` that keeps every body asked for and answers nothing usable."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return NOTHING_USABLE


class BatchRun:
    """One batch of chat bodies at an OpenAI-compatible upstream, from upload to answers."""

    def __init__(
        self,
        upstream: OpenAICompatible,
        model: str,
        cache: AnswerCache,
        *,
        show_progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.upstream = upstream
        self.model = model  # the id the upstream knows (routing prefix removed)
        self.cache = cache
        self.show_progress = show_progress
        self.sleep = sleep
        self._calling = False  # a call to the provider is under way
        self._interrupted = False  # Ctrl-C came during one: acted on once it is over

    def run(self, bodies: Iterable[dict[str, Any]]) -> BatchAnswers:
        """Send the bodies the cache cannot answer as one batch; wait for it; its answers."""
        pending: dict[str, dict[str, Any]] = {}
        for body in bodies:
            key = cache_key(body, self.cache.base_url)
            if self.cache.lookup(body) is None:
                pending.setdefault(key, body)
        result = BatchAnswers(requests=len(pending))
        if not pending:
            return result
        lines = [
            {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": {**body, "model": self.model}}
            for key, body in pending.items()
        ]
        data = b"".join(json_bytes(line) + b"\n" for line in lines)
        with self._interrupts_between_calls():
            return self._send_and_wait(lines, data, result)

    def _send_and_wait(self, lines: list[dict[str, Any]], data: bytes, result: BatchAnswers) -> BatchAnswers:
        uploaded = self._call("upload the batch's input file", "POST", "/files", *_multipart(data))
        batch = self._call(
            "create the batch",
            "POST",
            "/batches",
            json_bytes({"input_file_id": uploaded["id"], "endpoint": ENDPOINT, "completion_window": "24h"}),
        )  # (Ctrl-C during the upload or this: the next check in _wait cancels the batch)
        result.batch_id = batch["id"]
        print(
            f"Batch {batch['id']}: {len(lines)} request{'' if len(lines) == 1 else 's'} sent "
            "at the batch price; waiting for it (Ctrl-C cancels it)",
            file=sys.stderr,
        )
        batch = self._wait(batch, len(lines))
        result.status = batch["status"]
        if batch["status"] == "failed":
            raise BatchFailed(f"The batch {batch['id']} failed: {_errors(batch)}")
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if isinstance(file_id, str) and file_id:
                self._read_answers(batch["id"], file_id, result)
        return result

    def _wait(self, batch: dict[str, Any], total: int) -> dict[str, Any]:
        progress = Progress(total, label=f"requests of {batch['id']}", enabled=self.show_progress)
        pause = FIRST_POLL
        try:
            while batch.get("status") not in FINISHED:
                self._raise_if_interrupted()
                self.sleep(pause)
                pause = min(2 * pause, LONGEST_POLL)
                batch = self._call(f"retrieve the batch {batch['id']}", "GET", f"/batches/{batch['id']}")
                counts = batch.get("request_counts") or {}
                finished = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
                progress.update(finished, failed=int(counts.get("failed") or 0))
        except KeyboardInterrupt:
            progress.close()
            self._cancel(batch["id"])
            raise
        progress.close()
        return batch

    @contextmanager
    def _interrupts_between_calls(self) -> Iterator[None]:
        """Ctrl-C during a call to the provider is raised once the call is over, never inside it:
        the client's gevent sockets torn mid-answer could leave the cancel that follows hanging."""
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread receives signals
            return

        def on_interrupt(signum: int, frame: Any) -> None:
            if not self._calling:
                raise KeyboardInterrupt
            self._interrupted = True

        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _raise_if_interrupted(self) -> None:
        if self._interrupted:
            self._interrupted = False
            raise KeyboardInterrupt

    def _cancel(self, batch_id: str) -> None:
        try:
            self._call(f"cancel the batch {batch_id}", "POST", f"/batches/{batch_id}/cancel", b"")
        except BatchFailed as error:
            print(f"\n{error}", file=sys.stderr)
        else:
            print(f"\nCancelled the batch {batch_id}.", file=sys.stderr)

    def _read_answers(self, batch_id: str, file_id: str, into: BatchAnswers) -> None:
        what = f"download the file {file_id} of the batch {batch_id}"
        response = self._send(what, "GET", f"/files/{file_id}/content")
        for number, line in enumerate(response.body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = entry["custom_id"]
            except (ValueError, KeyError, TypeError):
                raise BatchFailed(
                    f"Line {number} of the file {file_id} of the batch {batch_id} is not a batch answer."
                ) from None
            answer = entry.get("response") or {}
            status, body = answer.get("status_code"), answer.get("body")
            if status == 200 and isinstance(body, dict):
                into.answers[key] = body
            elif isinstance(status, int):
                # The refusal a normal run would have had from the same request.
                into.failures[key] = status_error(
                    self.upstream.name, status, {}, json_bytes(body or {}), "", None, relayed=False
                )
            else:
                error = entry.get("error") or {}
                into.failures[key] = ProviderBadAnswer(
                    f"The batch {batch_id} did not answer this: {error.get('message') or 'no reason given'}"
                    f" ({error.get('code') or 'no code'})."
                )

    def _call(
        self, what: str, method: str, path: str, body: bytes | None = None, headers: Headers = None
    ) -> dict[str, Any]:
        response = self._send(what, method, path, body, headers)
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise BatchFailed(f"Could not {what}: the provider's answer has no 'id'.")
        return answer

    def _send(
        self, what: str, method: str, path: str, body: bytes | None = None, headers: Headers = None
    ) -> Any:
        self._calling = True
        try:
            return self.upstream.request(method, path, body=body, headers=headers)
        except ProviderError as error:
            status = getattr(error, "provider_status", None)
            told = f" (HTTP {status})" if status else ""
            raise BatchFailed(f"Could not {what}: {error.message}{told}") from None
        finally:
            self._calling = False


def _multipart(data: bytes) -> tuple[bytes, dict[str, str]]:
    """The upload's body and headers: `purpose=batch` and the JSON Lines file."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{INPUT_NAME}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _errors(batch: dict[str, Any]) -> str:
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    described = []
    for error in data if isinstance(data, list) else []:
        if isinstance(error, dict):
            where = f"line {error['line']}: " if error.get("line") is not None else ""
            code = f" ({error['code']})" if error.get("code") else ""
            described.append(f"{where}{error.get('message') or 'no message'}{code}")
    return "; ".join(described) or "the provider gave no reason"

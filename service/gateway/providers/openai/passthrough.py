"""Answers sent on as they arrive, outside the JSON relay: a binary or streamed answer (speech, a
file's content, transcription events) relayed block by block (`OpenAICompatible.open` opened it).

The provider key is blanked out of it in its plain spelling, also when split between two blocks
(the last bytes of a block that could start the key wait for the next); a whole answer is read
with `OpenAICompatible.read_answer`, which blanks every JSON spelling (`service.gateway.redaction`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from service.core.responses import JSON, ClientResponse
from service.gateway.providers.http_pool import TransportError, UpstreamResponse
from service.gateway.providers.openai.headers import relayed_headers
from service.governance.usage import ProviderCall

BLOCK = 16384  # bytes of a binary answer read (and sent on) at a time


def answer_headers(answer: UpstreamResponse, key: str) -> list[tuple[str, str]]:
    return relayed_headers(answer.headers, key)


def as_it_arrives(
    answer: UpstreamResponse,
    key: str,
    call: ProviderCall,
    on_end: Callable[[int, str | None], None] | None = None,
) -> ClientResponse:
    """The answer sent on block by block as it arrives. Closing it (the server does once it went out
    or the client left) closes the upstream connection and calls `on_end(bytes_sent, error)`,
    which finishes `call`'s usage record (by default, with no cost)."""
    sent = 0
    failure: str | None = None

    def blocks() -> Iterator[bytes]:
        nonlocal sent, failure
        carry = b""
        hold = max(0, len(key) - 1)
        while True:
            try:
                block = answer.read_block(BLOCK)
            except TransportError:
                failure = "upstream_broke_off"
                return  # the client sees a body cut short: the length or the chunked end is missing
            if not block:
                break
            data = (carry + block).replace(key.encode(), b"[FILTERED]") if key else block
            carry, data = (data[-hold:], data[:-hold]) if hold and len(data) > hold else (data, b"")
            if data:
                call.sent_bytes()
                sent += len(data)
                yield data
        if carry:
            sent += len(carry)
            yield carry

    def close() -> None:
        answer.close()
        if on_end is not None:
            on_end(sent, failure)
        call.finish(answer.status if failure is None else 502, error=failure, cost=0.0)

    headers = [("Content-Type", answer.headers.get("content-type", JSON)), *answer_headers(answer, key)]
    if "content-disposition" in answer.headers:
        headers.append(("Content-Disposition", answer.headers["content-disposition"]))
    return ClientResponse(answer.status, headers, blocks(), close)

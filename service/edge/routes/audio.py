"""`POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart: a recording sent on to
the provider as it arrives, never held whole) and `POST /v1/audio/speech` (JSON; the audio sent
back to the client as it arrives).

Transcripts come back as the client asked (JSON, text, SRT, VTT, or streamed transcription
events); under a safety policy a transcript is checked as output text before it is sent (a
streamed one is then held back until it is whole). Costs follow the price table: transcription
per minute of audio (the duration the answer reports, else the last subtitle's end, else
estimated from the recording's size at ESTIMATED_BYTES_PER_MINUTE, marked `estimated`), speech
per character of its input.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from service.config.prices import PriceTable
from service.core.responses import ClientResponse, JsonRoute, json_bytes
from service.edge.bodies import UPLOAD
from service.edge.routes import media
from service.edge.screening import Screen
from service.edge.uploads import MultipartUpload
from service.gateway.providers.openai.passthrough import as_it_arrives
from service.gateway.routing import Router

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

TRANSCRIPTIONS = "/audio/transcriptions"
TRANSLATIONS = "/audio/translations"
SPEECH = "/audio/speech"
PATHS = (TRANSCRIPTIONS, TRANSLATIONS, SPEECH)
# A recording whose answer tells no duration is timed from its size: 1 MB a minute is 128 kbit/s
# MP3, the common upload; compressed speech is smaller (the estimate errs high, the safe side).
ESTIMATED_BYTES_PER_MINUTE = 1_000_000
_CUE_END = re.compile(rb"--> *(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")


class Transcribe(JsonRoute):
    generates = False  # priced per image, minute or character, not per token
    streams_body = True

    def __init__(self, path: str, router: Router, prices: PriceTable, screen: Screen) -> None:
        self.path = path
        self.router = router
        self.prices = prices
        self.screen = screen

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        upload = MultipartUpload(environ[UPLOAD])
        fields = upload.read_fields("model")
        model = fields.get("model")
        deployment = media.deployment_for(self.router, model, self.path)
        renamed = media.renamed_model(deployment, model)
        streamed = fields.get("stream", "").lower() == "true"
        call = media.call_for(deployment, stream=streamed)
        provider = media.provider_of(deployment)
        answer, key = media.send_upload(provider, call, self.path, environ, upload, renamed)
        names = media.price_names(deployment)

        def cost(seconds: float | None) -> tuple[float | None, dict[str, Any]]:
            details: dict[str, Any] = {}
            if seconds is None:
                seconds = upload.upload.received * 60 / ESTIMATED_BYTES_PER_MINUTE
                details["estimated"] = True
            details["audio_seconds"] = round(seconds, 3)
            return self.prices.audio_cost(names, seconds), details

        is_events = answer.headers.get("content-type", "").startswith("text/event-stream")
        if is_events and not self.screen.active():

            def ended(sent: int, error: str | None) -> None:
                price, details = cost(None)
                call.finish(answer.status if error is None else 502, error=error, cost=price, details=details)

            response = as_it_arrives(answer, key, call, ended)
            response.headers.append((media.DEPLOYMENT_HEADER, deployment.name))
            return response
        data, headers = media.whole_answer(provider, call, answer, key)
        text, seconds = transcript_of(data, is_events)
        try:
            if self.screen.active():
                self.screen.output_text(text)
        except BaseException as error:
            call.finish(getattr(error, "status", 500), error=getattr(error, "kind", "exception"), cost=0.0)
            raise
        price, details = cost(seconds)
        call.finish(answer.status, cost=price, details=details)
        return media.relayed(answer.status, data, answer, headers, deployment)


def transcript_of(data: bytes, events: bool) -> tuple[str, float | None]:
    """The text of a transcription answer in any of its formats, and the audio's duration in
    seconds when the answer tells it."""
    if events:  # the events' deltas make the transcript; `transcript.text.done` has it whole
        text, parts = None, []
        for line in data.splitlines():
            if line.startswith(b"data:"):
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                if isinstance(event, dict):
                    if event.get("type") == "transcript.text.done" and isinstance(event.get("text"), str):
                        text = event["text"]
                    elif isinstance(event.get("delta"), str):
                        parts.append(event["delta"])
        return (text if text is not None else "".join(parts)), None
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        seconds = parsed.get("duration")
        usage = parsed.get("usage")
        if not isinstance(seconds, int | float) and isinstance(usage, dict):
            seconds = usage.get("seconds")
        text = parsed.get("text")
        return (text if isinstance(text, str) else ""), (
            float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else None
        )
    ends = _CUE_END.findall(data)  # SRT or VTT: the last cue's end is the recording's length
    text = data.decode("utf-8", "replace")
    if not ends:
        return text, None
    hours, minutes, secs, fraction = ends[-1]
    return text, int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(fraction.ljust(3, b"0")) / 1000


class Speech(JsonRoute):
    generates = False  # priced per image, minute or character, not per token
    path = SPEECH

    def __init__(self, router: Router, prices: PriceTable, screen: Screen) -> None:
        self.router = router
        self.prices = prices
        self.screen = screen

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        model = body.get("model")
        deployment = media.deployment_for(self.router, model, self.path)
        spoken = body.get("input")
        spoken = spoken if isinstance(spoken, str) else ""
        sent = dict(body)
        if spoken:
            spoken = sent["input"] = self.screen.input_text(spoken, "input")
        if deployment.model and deployment.model != model:
            sent["model"] = deployment.model
        if sent != body:
            raw = json_bytes(sent)
        call = media.call_for(deployment, stream=True)
        provider = media.provider_of(deployment)
        answer, key = media.open_call(provider, call, "POST", self.path, environ, body=raw)
        price = self.prices.speech_cost(media.price_names(deployment), len(spoken))

        def ended(sent: int, error: str | None) -> None:
            details = {"characters": len(spoken), "audio_bytes": sent}
            call.finish(answer.status if error is None else 502, error=error, cost=price, details=details)

        response = as_it_arrives(answer, key, call, ended)
        response.headers.append((media.DEPLOYMENT_HEADER, deployment.name))
        return response


def routes(router: Router, prices: PriceTable, screen: Screen) -> dict[str, JsonRoute]:
    return {
        "/v1" + TRANSCRIPTIONS: Transcribe(TRANSCRIPTIONS, router, prices, screen),
        "/v1" + TRANSLATIONS: Transcribe(TRANSLATIONS, router, prices, screen),
        "/v1" + SPEECH: Speech(router, prices, screen),
    }

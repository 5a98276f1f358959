"""`POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart: the image files, a
mask, the prompt), relayed to the model's OpenAI-compatible upstream.

The answer (`b64_json` or `url` images) is passed through as it came. Under a safety policy the
prompt is checked before anything is sent and the images before any is sent back
(`service.edge.screening`). Each call costs its images at the price table's price for the model,
size and quality (`cost_usd` in its usage record, counted against the client's budget).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service.config.prices import PriceTable
from service.core.responses import ClientResponse, JsonRoute, json_bytes
from service.edge.bodies import UPLOAD
from service.edge.routes import media
from service.edge.screening import Screen
from service.edge.uploads import MultipartUpload
from service.gateway.providers.http_pool import UpstreamResponse
from service.gateway.routing import Deployment, Router
from service.governance.usage import ProviderCall

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

GENERATIONS = "/images/generations"
EDITS = "/images/edits"
PATHS = (GENERATIONS, EDITS)
DEFAULT_SIZE = "1024x1024"
DEFAULT_QUALITY = "auto"  # not in a price entry: priced as the entry's `<size>` (its dearest)


class _ImageRoute(JsonRoute):
    generates = False  # priced per image, minute or character, not per token

    def __init__(self, router: Router, prices: PriceTable, screen: Screen) -> None:
        self.router = router
        self.prices = prices
        self.screen = screen

    def _answer(
        self,
        deployment: Deployment,
        call: ProviderCall,
        answer: UpstreamResponse,
        key: str,
        asked: Mapping[str, Any],
    ) -> ClientResponse:
        provider = media.provider_of(deployment)
        data, headers = media.whole_answer(provider, call, answer, key)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        images = parsed.get("data") if isinstance(parsed, dict) else None
        images = [image for image in images if isinstance(image, dict)] if isinstance(images, list) else []
        try:
            if images and self.screen.active():
                self.screen.output_images(images)
        except BaseException as error:
            call.finish(getattr(error, "status", 500), error=getattr(error, "kind", "exception"), cost=0.0)
            raise
        # What was made, as the answer says (gpt-image-1 does), else as the request asked.
        answered = parsed if isinstance(parsed, dict) else {}
        size = media.field(answered, "size", media.field(asked, "size", DEFAULT_SIZE))
        quality = media.field(answered, "quality", media.field(asked, "quality", DEFAULT_QUALITY))
        cost = self.prices.image_cost(media.price_names(deployment), size, quality, len(images))
        details = {"images": len(images), "size": size, "quality": quality}
        call.finish(answer.status, cost=cost, details=details)
        return media.relayed(answer.status, data, answer, headers, deployment)


class ImageGenerations(_ImageRoute):
    path = GENERATIONS

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        model = body.get("model")
        deployment = media.deployment_for(self.router, model, self.path)
        prompt = body.get("prompt")
        sent = dict(body)
        if isinstance(prompt, str):
            sent["prompt"] = self.screen.input_text(prompt)
        if deployment.model and deployment.model != model:
            sent["model"] = deployment.model
        if sent != body:
            raw = json_bytes(sent)
        call = media.call_for(deployment)
        provider = media.provider_of(deployment)
        answer, key = media.open_call(provider, call, "POST", self.path, environ, body=raw)
        return self._answer(deployment, call, answer, key, body)


class ImageEdits(_ImageRoute):
    path = EDITS
    streams_body = True

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        upload = MultipartUpload(environ[UPLOAD])
        fields = upload.read_fields("model", "prompt")
        model = fields.get("model")
        deployment = media.deployment_for(self.router, model, self.path)
        renamed = media.renamed_model(deployment, model)
        if "prompt" in fields:
            prompt = self.screen.input_text(fields["prompt"])
            if prompt != fields["prompt"]:
                renamed["prompt"] = prompt  # its personal data redacted
        call = media.call_for(deployment)
        provider = media.provider_of(deployment)
        answer, key = media.send_upload(provider, call, self.path, environ, upload, renamed)
        return self._answer(deployment, call, answer, key, upload.reader.fields)


def routes(router: Router, prices: PriceTable, screen: Screen) -> dict[str, JsonRoute]:
    return {
        "/v1" + GENERATIONS: ImageGenerations(router, prices, screen),
        "/v1" + EDITS: ImageEdits(router, prices, screen),
    }

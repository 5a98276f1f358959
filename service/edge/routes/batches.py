"""`/v1/batches`: create, retrieve, list and cancel, relayed to the default upstream and owned per
client like files (`service.edge.routes.files`): a batch may only be made of the client's own
input file, and another client's batch id is a 404. The output and error files of a batch the
client retrieves become its own files, so it can download them (and no other client can).

A batch costs nothing until it completes. The first request of its client that sees it
`completed` (a retrieve: the SDKs and the accuracy lab poll it) charges it, once: its tokens at
the price table's price times the entry's `batch` share (half, OpenAI's Batch API price, unless
the table says otherwise), in a usage record of its own (`batch_id`), counted against the
client's budget like any call. The tokens are the batch's `usage` when the provider reports it,
else the sum of the `usage` of each answer in its output file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, request

from service.config.prices import PriceTable
from service.core.responses import ClientResponse
from service.edge.bodies import json_object
from service.edge.routes import media
from service.edge.routes.files import FILE, default_deployment, not_found, owned_listing, relay_json
from service.gateway.providers.http_pool import TransportError
from service.gateway.providers.openai import OpenAICompatible
from service.gateway.routing import Router
from service.governance.ownership import Ownership
from service.governance.usage import ProviderCall, measured, normalise_usage

log = logging.getLogger(__name__)

PATH = "/v1/batches"
BATCH = "batch"


def blueprint(router: Router, ownership: Ownership, prices: PriceTable) -> Blueprint:
    routes = Blueprint("batches", __name__)

    def own(batch_id: str) -> None:
        if not ownership.owns(media.client_name(), BATCH, batch_id):
            raise not_found("Batch", batch_id)

    @routes.post(PATH)
    def create_batch() -> ClientResponse:
        raw = request.get_data()
        body = json_object(raw)
        file_id = body.get("input_file_id")
        if isinstance(file_id, str) and not ownership.owns(media.client_name(), FILE, file_id):
            raise not_found("File", file_id, param="input_file_id")

        def record(status: int, answer: dict[str, Any]) -> None:
            if status < 300 and isinstance(answer.get("id"), str):
                ownership.record(media.client_name(), BATCH, answer["id"])

        return relay_json(router, "POST", "/batches", body=raw, then=record)

    @routes.get(PATH)
    def list_batches() -> ClientResponse:
        return owned_listing(router, ownership, "/batches", BATCH)

    @routes.get(PATH + "/<batch_id>")
    def retrieve_batch(batch_id: str) -> ClientResponse:
        own(batch_id)

        def settle(status: int, batch: dict[str, Any]) -> None:
            if status >= 300:
                return
            # The files the provider made of the client's batch (its answers, its errors) are the
            # client's too, or it could never download them.
            for name in ("output_file_id", "error_file_id"):
                if isinstance(batch.get(name), str):
                    ownership.record(media.client_name(), FILE, batch[name])
            completed = batch.get("status") == "completed"
            if completed and ownership.first_charge(media.client_name(), BATCH, batch_id):
                charge(router, prices, batch_id, batch)

        return relay_json(router, "GET", f"/batches/{batch_id}", then=settle)

    @routes.post(PATH + "/<batch_id>/cancel")
    def cancel_batch(batch_id: str) -> ClientResponse:
        own(batch_id)
        return relay_json(router, "POST", f"/batches/{batch_id}/cancel", body=b"")

    return routes


def charge(router: Router, prices: PriceTable, batch_id: str, batch: dict[str, Any]) -> None:
    """Write the completed batch's usage record with its cost (added to the request's totals, so
    to the client's budget when the request settles)."""
    provider, _ = default_deployment(router)
    totals: dict[str, dict[str, int]] = {}  # model: token counts
    usage = normalise_usage(batch.get("usage"))
    if usage and isinstance(batch.get("model"), str):
        totals[batch["model"]] = usage
    elif isinstance(batch.get("output_file_id"), str):
        totals = _output_usage(provider, batch["output_file_id"])
    cost: float | None = 0.0
    summed = {"prompt_tokens": 0, "completion_tokens": 0}
    for model, counts in totals.items():
        names = [f"{provider.name}/{model}", model]
        listed = prices.cost(
            names,
            counts.get("prompt_tokens", 0),
            counts.get("completion_tokens", 0),
            counts.get("cached_tokens", 0),
        )
        if listed is None:
            cost = None
        elif cost is not None:
            cost += listed * prices.batch_share(*names)
        for name in summed:
            summed[name] += counts.get(name, 0)
    models = sorted(totals)
    call = ProviderCall(", ".join(models) or None, deployment=f"{provider.name}/batch")
    details = {"batch_id": batch_id, "batch_requests": (batch.get("request_counts") or {}).get("completed")}
    call.finish(200, usage=summed, cost=None if cost is None else round(cost, 8), details=details)


def _lines(answer: Any) -> Iterator[bytes]:
    """The lines of a JSON Lines body, each as soon as it has all arrived (one read at a time)."""
    pending = b""
    while data := answer.read_available():
        *lines, pending = (pending + data).split(b"\n")
        yield from lines
    if pending.strip():
        yield pending


def _output_usage(provider: OpenAICompatible, file_id: str) -> dict[str, dict[str, int]]:
    """Token counts per model of the answers in a batch's output file, read line by line."""
    totals: dict[str, dict[str, int]] = {}
    call = ProviderCall(None, deployment=provider.name)
    with measured(call):
        answer, _ = provider.open("GET", f"/files/{file_id}/content")
    try:
        for line in _lines(answer):
            try:
                body = json.loads(line)["response"]["body"]
            except (ValueError, KeyError, TypeError):
                continue
            counts = normalise_usage(body.get("usage")) if isinstance(body, dict) else None
            model = body.get("model") if isinstance(body, dict) else None
            if counts and isinstance(model, str):
                into = totals.setdefault(model, {})
                for name, value in counts.items():
                    into[name] = into.get(name, 0) + value
    except TransportError as error:
        log.warning("Could not read the output of batch file %s: %s", file_id, error.reason)
    finally:
        answer.close()
    call.finish(answer.status, cost=0.0)
    return totals

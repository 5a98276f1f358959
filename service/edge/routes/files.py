"""`/v1/files`: upload (multipart, sent on as it arrives), list, retrieve, content and delete,
relayed to the default upstream and owned per client (`service.governance.ownership`).

A client sees and touches only the files it uploaded: another client's file id is a 404 as if it
did not exist (nothing is asked of the provider), and a list holds only the client's own files.
Each call has its usage record (files cost nothing: `cost_usd` 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, request

from service.core.errors import RequestRejected
from service.core.responses import ClientResponse, JsonRoute
from service.edge.bodies import UPLOAD
from service.edge.routes import media
from service.edge.uploads import MultipartUpload
from service.gateway.providers.openai import OpenAICompatible
from service.gateway.providers.openai.passthrough import as_it_arrives
from service.gateway.routing import Router
from service.governance.ownership import Ownership
from service.governance.usage import ProviderCall

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

PATH = "/v1/files"
FILE = "file"


def not_found(kind: str, object_id: str, param: str = "id") -> RequestRejected:
    """OpenAI's own answer for an id it does not know: another client's id looks the same."""
    return RequestRejected(f"No such {kind} object: {object_id}", status=404, param=param)


def default_deployment(router: Router) -> tuple[OpenAICompatible, ProviderCall]:
    """Files and batches live at the default upstream (they name no model to route by)."""
    provider = router.default
    if not isinstance(provider, OpenAICompatible):
        raise RequestRejected("The default upstream serves no files or batches.", status=404)
    return provider, ProviderCall(None, deployment=provider.name)


def relay_json(
    router: Router,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    query: str | None = None,
    then: Callable[[int, dict[str, Any]], None] | None = None,
) -> ClientResponse:
    """Send a small request to the default upstream and relay its JSON answer; `then(status,
    answer)` sees a parsed 2xx answer first (ownership recorded, a batch charged)."""
    provider, call = default_deployment(router)
    answer, key = media.open_call(provider, call, method, path, request.environ, body=body, query=query)
    data, headers = media.whole_answer(provider, call, answer, key)
    call.finish(answer.status, cost=0.0)
    if then is not None:
        then(answer.status, _object(data))
    return media.relayed(answer.status, data, answer, headers)


def owned_listing(router: Router, ownership: Ownership, path: str, kind: str) -> ClientResponse:
    """GET `path` (the files or the batches) at the default upstream, listing only the client's own."""
    response = relay_json(router, "GET", path)
    if response.status < 300:
        mine = owned_list(response.content(), ownership.owned(media.client_name(), kind))
        if mine is not None:
            response.replace_json(mine)
    return response


def owned_list(data: bytes, owned: set[str]) -> dict[str, Any] | None:
    """A list answer (`{"object": "list", "data": [...]}`) with only the client's own objects;
    None when `data` is no list answer."""
    parsed = _object(data)
    items = parsed.get("data")
    if not isinstance(items, list):
        return None
    mine = [item for item in items if isinstance(item, dict) and item.get("id") in owned]
    if mine:
        parsed["first_id"], parsed["last_id"] = mine[0].get("id"), mine[-1].get("id")
    else:
        parsed["first_id"] = parsed["last_id"] = None
    parsed["data"] = mine
    return parsed


def _object(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class FileUpload(JsonRoute):
    """POST /v1/files: the upload sent on as it arrives; the new file recorded as the client's."""

    streams_body = True
    other_methods_in_flask = True  # GET /v1/files is the list
    generates = False

    def __init__(self, router: Router, ownership: Ownership) -> None:
        self.router = router
        self.ownership = ownership

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        upload = MultipartUpload(environ[UPLOAD])
        upload.read_fields("purpose")
        provider, call = default_deployment(self.router)
        answer, key = media.send_upload(provider, call, "/files", environ, upload, {})
        data, headers = media.whole_answer(provider, call, answer, key)
        call.finish(answer.status, cost=0.0, details={"upload_bytes": upload.upload.received})
        file_id = _object(data).get("id")
        if answer.status < 300 and isinstance(file_id, str):
            self.ownership.record(media.client_name(), FILE, file_id)
        return media.relayed(answer.status, data, answer, headers)


def blueprint(router: Router, ownership: Ownership) -> Blueprint:
    routes = Blueprint("files", __name__)

    def own(file_id: str) -> None:
        if not ownership.owns(media.client_name(), FILE, file_id):
            raise not_found("File", file_id)

    # POST is the upload, which the pipeline serves before Flask (FileUpload); named here so an
    # OPTIONS answer's and a 405's `Allow` list it.
    @routes.route(PATH, methods=["GET", "POST"])
    def list_files() -> ClientResponse:
        if request.method != "GET":
            raise RequestRejected("Uploads are served by the request pipeline.", status=405)
        return owned_listing(router, ownership, "/files", FILE)

    @routes.get(PATH + "/<file_id>")
    def retrieve_file(file_id: str) -> ClientResponse:
        own(file_id)
        return relay_json(router, "GET", f"/files/{file_id}")

    @routes.delete(PATH + "/<file_id>")
    def delete_file(file_id: str) -> ClientResponse:
        own(file_id)

        def forget(status: int, answer: dict[str, Any]) -> None:
            if status < 300 and answer.get("deleted") is True:
                ownership.forget(media.client_name(), FILE, file_id)

        return relay_json(router, "DELETE", f"/files/{file_id}", then=forget)

    @routes.get(PATH + "/<file_id>/content")
    def file_content(file_id: str) -> ClientResponse:
        own(file_id)
        provider, call = default_deployment(router)
        answer, key = media.open_call(provider, call, "GET", f"/files/{file_id}/content", request.environ)
        return as_it_arrives(answer, key, call)

    return routes

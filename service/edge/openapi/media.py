"""The image, audio, file and batch operations: relayed to the upstream (the OpenAI API reference
is their contract), uploads sent on as they arrive, files and batches owned per client."""

from __future__ import annotations

from typing import Any

from service.edge.openapi.common import PROVIDER_ERRORS, RELAYED, error, json_answer, ref, responses
from service.edge.openapi.relayed import ANSWER_HEADERS, ROUTING

UPLOAD_ERRORS = {
    "400": error(
        "The multipart body is malformed or over a bound (`invalid_multipart`: its fields, files or "
        "a part's headers), `model` is served by Amazon Bedrock (which serves /v1/chat/completions "
        "only), or the upstream rejected the request"
    ),
    "413": error("The upload is larger than AIPROXY_MAX_UPLOAD_BYTES (default 25 MiB)"),
}
NOT_OWNED = {"404": error("No such object, or one another client created (answered alike)")}
ID = {"in": "path", "required": True, "schema": {"type": "string"}}


def _multipart(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": fields, "additionalProperties": True}
            }
        },
    }


def _post(
    summary: str, body: dict[str, Any], ok: dict[str, Any], *more: dict[str, Any], description: str = ROUTING
) -> dict[str, Any]:
    ok["headers"] = {**ok["headers"], **ANSWER_HEADERS}
    return {
        "post": {
            "summary": summary,
            "description": description,
            "tags": ["OpenAI-compatible"],
            "requestBody": body,
            "responses": responses(ok, *more, PROVIDER_ERRORS, RELAYED),
        }
    }


def _json_body(example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref("Object"), "example": example}}}


def _files_op(summary: str, *more: dict[str, Any], answer: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["OpenAI-compatible"],
        "responses": responses(answer or json_answer("The answer"), *more, PROVIDER_ERRORS, RELAYED),
    }


def _with_id(operation: dict[str, Any], name: str) -> dict[str, Any]:
    return {**operation, "parameters": [{"name": name, **ID}]}


def paths() -> dict[str, Any]:
    file = {"type": "string", "contentEncoding": "binary"}
    image_fields = {"model": {"type": "string"}, "prompt": {"type": "string"}, "image": file, "mask": file}
    audio_fields = {"model": {"type": "string"}, "file": file, "response_format": {"type": "string"}}
    priced = " Priced per image by model, size and quality (the price table)."
    upload = " The upload is sent on to the provider as it arrives (never held whole)."
    binary = {
        "description": "The file's bytes, sent on as they arrive",
        "headers": json_answer("")["headers"],
        "content": {"application/octet-stream": {"schema": {"type": "string", "contentEncoding": "binary"}}},
    }
    speech = {**binary, "description": "The audio, sent on as the upstream makes it"}
    speech["content"] = {"audio/mpeg": {"schema": {"type": "string", "contentEncoding": "binary"}}}
    transcript = json_answer("The transcript as `response_format` asked (JSON, text, SRT, VTT)")
    transcript["content"]["text/plain"] = {"schema": {"type": "string"}}
    transcript["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "/v1/images/generations": _post(
            "Generate images (b64_json or url answers passed through)",
            _json_body({"model": "gpt-image-1", "prompt": "A red apple", "size": "1024x1024"}),
            json_answer("The upstream's images"),
            {"400": error("`model` is served by Amazon Bedrock, or the upstream rejected the request")},
            description=ROUTING + priced,
        ),
        "/v1/images/edits": _post(
            "Edit images (multipart: image files, a mask, a prompt)",
            _multipart(image_fields),
            json_answer("The upstream's images"),
            UPLOAD_ERRORS,
            description=ROUTING + priced + upload,
        ),
        "/v1/audio/transcriptions": _post(
            "Transcribe a recording (multipart; streamed events with stream=true)",
            _multipart(audio_fields),
            transcript,
            UPLOAD_ERRORS,
            description=ROUTING + " Priced per minute of audio." + upload,
        ),
        "/v1/audio/translations": _post(
            "Translate a recording into English text (multipart)",
            _multipart(audio_fields),
            transcript,
            UPLOAD_ERRORS,
            description=ROUTING + " Priced per minute of audio." + upload,
        ),
        "/v1/audio/speech": _post(
            "Speak a text (the audio streamed back as it is made)",
            _json_body({"model": "tts-1", "voice": "alloy", "input": "Hello class"}),
            speech,
            {"400": error("`model` is served by Amazon Bedrock, or the upstream rejected the request")},
            description=ROUTING + " Priced per character of `input`.",
        ),
        "/v1/files": {
            "get": _files_op("List the client's own files"),
            "post": {
                **_files_op("Upload a file (multipart: file, purpose), owned by the client", UPLOAD_ERRORS),
                "requestBody": _multipart({"file": file, "purpose": {"type": "string"}}),
            },
        },
        "/v1/files/{file_id}": {
            "get": _with_id(_files_op("One of the client's files", NOT_OWNED), "file_id"),
            "delete": _with_id(_files_op("Delete one of the client's files", NOT_OWNED), "file_id"),
        },
        "/v1/files/{file_id}/content": {
            "get": _with_id(_files_op("A file's content", NOT_OWNED, answer=binary), "file_id"),
        },
        "/v1/batches": {
            "get": _files_op("List the client's own batches"),
            "post": {
                **_files_op(
                    "Create a batch of the client's own input file (charged at batch prices once completed)",
                    {"404": error("`input_file_id` is no file of the client's")},
                ),
                "requestBody": _json_body(
                    {"input_file_id": "file-a", "endpoint": "/v1/responses", "completion_window": "24h"}
                ),
            },
        },
        "/v1/batches/{batch_id}": {
            "get": _with_id(_files_op("One of the client's batches", NOT_OWNED), "batch_id"),
        },
        "/v1/batches/{batch_id}/cancel": {
            "post": _with_id(_files_op("Cancel one of the client's batches", NOT_OWNED), "batch_id"),
        },
    }

"""The OpenAPI 3.1 description of every route, served at `GET /openapi.json`.

Built once (`document.build_document`) from `common` (references, headers, the error sets),
`components` (the shared schemas), `relayed` (the routes that reach an upstream) and `assessment`
(the grading routes, described from the same field declarations the request parser reads with:
`service.assessment.fields`).

A test checks that every route the app registers is described here, so the two stay in step, and
another runs schemathesis against the real server with this document
(tests/e2e/test_openapi_conformance.py): every status, content type, header and body the server
answers must be described, and the field constraints must be the ones the parser applies, no
looser and no stricter.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.edge.openapi.document import build_document

blueprint = Blueprint("openapi", __name__)
_DOCUMENT = build_document()


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(_DOCUMENT)

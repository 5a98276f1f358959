"""Health and diagnostics: `/` for the load balancer, `/test*` to see logging and reporting work."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from service.core.errors import error_body
from service.core.responses import ClientResponse

blueprint = Blueprint("status", __name__)
log = logging.getLogger(__name__)


class DiagnosticException(RuntimeError):
    """Raised on purpose by /test/exception."""


@blueprint.get("/")
def health() -> Response:
    return Response("AI Proxy is running.\n", mimetype="text/plain")


@blueprint.get("/test")
def test() -> Response:
    return jsonify({})


@blueprint.get("/test/exception")
def test_exception() -> Response:
    raise DiagnosticException("Test exception raised on purpose by /test/exception")


@blueprint.get("/test/error")
def test_error() -> Response:
    log.error("Test error logged on purpose by /test/error")
    return jsonify({})


@blueprint.get("/test/critical")
def test_critical() -> Response:
    log.critical("Test critical message logged on purpose by /test/critical")
    return jsonify({})


@blueprint.get("/test/429")
def test_429() -> ClientResponse:
    return ClientResponse.json(
        error_body(429, "Test rate limit answer from /test/429"), 429, headers={"Retry-After": "1"}
    )

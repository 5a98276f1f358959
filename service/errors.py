"""One JSON error shape for every failure: `{"error": {"message", "type", "param", "code"}}`.

It is the shape OpenAI clients parse, so SDKs show the proxy's own errors well. Nothing here ever
returns HTML or a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

# The `type` OpenAI uses for each status; others fall back by class of status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def error_body(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | int | None = None,
) -> dict:
    return {
        "error": {
            "message": message,
            "type": type or error_type(status),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(status, message, type=type, param=param, code=code))
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


class ApiError(Exception):
    """Raise anywhere in a request to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return error_response(
            self.status,
            self.message,
            type=self.type,
            param=self.param,
            code=self.code,
            headers=self.headers,
        )


SERVER_ERROR_MESSAGE = "The server failed to handle this request; it has been reported."
REQUEST_TOO_LARGE_MESSAGE = "The request body is too large."
_MESSAGES = {
    404: "No route matches this URL.",
    413: REQUEST_TOO_LARGE_MESSAGE,
    500: SERVER_ERROR_MESSAGE,
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = _MESSAGES.get(status) or error.description or error.name
        allowed = getattr(error, "valid_methods", None)  # set on 405 Method Not Allowed
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return error_response(status, message, headers=headers)

    # Registered for InternalServerError, not Exception, so Flask still logs the original
    # exception (which is how it reaches Honeybadger) before this shapes the answer.
    @app.errorhandler(InternalServerError)
    def _internal_error(error: InternalServerError) -> Response:
        return error_response(500, _MESSAGES[500])

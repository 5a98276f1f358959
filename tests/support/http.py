"""One HTTP request to a running server, where an error status is an answer like any other."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes


def fetch(
    url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 30
) -> Response:
    """GET `url` (POST `data` when given); an HTTP error status is returned, never raised."""
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())

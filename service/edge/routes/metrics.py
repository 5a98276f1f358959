"""`GET /metrics`: the server's metrics in Prometheus' text format (service.ops.prometheus), for a scraper
holding AIPROXY_METRICS_KEY.

The route needs no client key (service.governance.auth lets it through like the health check): a scraper is
not a client, and its requests must not count against any client's limits. It asks for its own
key instead, sent as `Authorization: Bearer <key>`. Without a key configured it answers 404, as
for a URL that does not exist: nothing is exposed, and nothing tells a prober it could be.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, request
from werkzeug.exceptions import NotFound

from service.core.errors import Unauthenticated
from service.core.responses import ClientResponse

UNAUTHORIZED_MESSAGE = (
    "Missing or invalid metrics key. Send AIPROXY_METRICS_KEY as 'Authorization: Bearer <key>'."
)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "replace")).digest()


def blueprint(metrics_key: str | None) -> Blueprint:
    routes = Blueprint("metrics", __name__)
    # Compared as digests: equal lengths, so the comparison's time tells nothing about the key.
    expected = _digest(metrics_key) if metrics_key else None
    if expected is not None:
        from service.ops.prometheus import exposition  # only then (service.ops.prometheus says why)

    @routes.get("/metrics")
    def prometheus_metrics() -> ClientResponse:
        if expected is None:
            raise NotFound()  # answered as any URL that does not exist (service.app)
        scheme, _, presented = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(presented.strip()), expected):
            raise Unauthenticated(UNAUTHORIZED_MESSAGE, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = exposition()
        return ClientResponse.of_bytes(200, body, content_type, headers={"Cache-Control": "no-store"})

    return routes

"""The routes that need no client key, in a module of its own: the server's worker imports it
before gevent patches the standard library, so it must import nothing else of the service (the
key check pulls in PyJWT, which imports ssl: imported before the patch, it would stay unpatched)."""

from __future__ import annotations

OPEN_PATHS = ("/", "/metrics", "/v1/signing-keys")


def is_open_route(method: str, path: str) -> bool:
    """Whether the route needs no client key: the health check, `/metrics` (which asks for its
    own key, AIPROXY_METRICS_KEY: service.edge.routes.metrics) and the public keys answers are
    signed with (`/v1/signing-keys`). Their bodies are never read (service.edge.pipeline,
    service.server.worker)."""
    return path in OPEN_PATHS and method in ("GET", "HEAD")

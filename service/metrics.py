"""One record per request: the access line (method, path, status, duration, client), on the logger
`service.access`, written once the answer has been sent or abandoned."""

from __future__ import annotations

import logging

from service.request_state import RequestState

access_log = logging.getLogger("service.access")


class RequestMetrics:
    def record(self, state: RequestState) -> None:
        fields = {"request_id": state.id, "client": state.client, "duration_ms": state.elapsed_ms()}
        access_log.info("%s %s %s", state.method, state.path, state.status or 500, extra=fields)

"""`GET /v1/limits`: a client's own limits, what it has used of them, and what is left; with an
end-user token (or `X-AIProxy-End-User`), the end user's too, under `end_user`.

Reading them is not counted against them (the pipeline does not admit this route: a client
polling its limits keeps its requests for real work), but it is bounded on its own: each client
may read them READS_PER_MINUTE times a minute in each process, so polling cannot hammer the
limits store (one read of it per answer).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from flask import Blueprint

from service.core import request_state
from service.core.errors import LimitExceeded
from service.core.responses import ClientResponse
from service.governance import end_user_limits
from service.governance.limits import PerMinute, window_resets
from service.runtime import Runtime

PATH = "/v1/limits"
READS_PER_MINUTE = 60


def blueprint(runtime: Runtime) -> Blueprint:
    routes = Blueprint("limits", __name__)
    reads = PerMinute(READS_PER_MINUTE)

    @routes.get(PATH)
    def own_limits() -> ClientResponse:
        state = request_state.current()
        limits = state.limits if state is not None else None
        if state is None or limits is None:  # no key store: the proxy runs open and counts nobody
            return ClientResponse.json({"client": None, "limits": None, "usage": None, "remaining": None})
        client = state.client
        wait = reads.take(client)
        if wait:
            raise LimitExceeded(
                f"Client {client!r} has read its limits {READS_PER_MINUTE} times in the last minute, "
                f"the most this route answers; its other requests are not affected.",
                retry_after=math.ceil(wait),
            )
        used = runtime.limiter.usage(client, limits)
        day_end, month_end = window_resets(datetime.now(UTC).timestamp())

        def left(limit: float | None, spent: float) -> float | None:
            return None if limit is None else round(max(0.0, limit - spent), 6)

        end_user = state.end_user
        mine = None
        if end_user is not None and end_user.limits is not None:
            used_by_user = runtime.limiter.end_user_usage(client, end_user)
            mine = {
                "limits": end_user.limits.as_dict(),
                "usage": used_by_user,
                "remaining": end_user_limits.remaining(end_user.limits, used_by_user),
            }
        return ClientResponse.json(
            {
                "client": client,
                "end_user": mine,
                "limits": {
                    "rpm": limits.rpm,
                    "tpm": limits.tpm,
                    "max_concurrent": limits.max_concurrent,
                    "budget_usd_per_day": limits.budget_usd_per_day,
                    "budget_usd_per_month": limits.budget_usd_per_month,
                },
                "usage": used,
                "remaining": {
                    "requests_this_minute": max(0, limits.rpm - used["requests_last_minute"]),
                    "tokens_this_minute": None
                    if limits.tpm is None
                    else max(0, limits.tpm - used["tokens_last_minute"]),
                    "budget_usd_today": left(limits.budget_usd_per_day, used["spent_usd_today"]),
                    "budget_usd_this_month": left(limits.budget_usd_per_month, used["spent_usd_this_month"]),
                },
                "budget_resets": {"day": day_end.isoformat(), "month": month_end.isoformat()},
                # Counted for every process and task (the shared store), or in this process only.
                "shared": runtime.limiter.shared,
            }
        )

    return routes

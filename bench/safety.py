"""The safety scenarios: proxies with a client key store whose client has no safety policy
(`limits`), a blocklist-and-PII policy (`safety`), and the same with a judge (`judge`).

The three differ only by the client's policy, so comparing `safety` and `judge` with `limits`
gives what each policy adds (issue 28: under 0.3 ms at the median for blocklist and PII). The
judge is answered by the benchmark's fake upstream, which says OK to every judge prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

from bench.processes import proxy_server
from bench.store import CLIENT_KEY, LIMITS
from testbed.server import RunningServer

PATHS = ("limits", "safety", "judge")
_BLOCKLIST = {
    "check": "blocklist",
    "words": ["darn", "heck", "badword"],
    "patterns": [r"\bkill\s+(?:him|her)\b"],
}
POLICIES = {
    "safety": {"input": [_BLOCKLIST], "output": [_BLOCKLIST], "pii": "redact"},
    "judge": {
        "input": [_BLOCKLIST, {"check": "judge", "model": "gpt-4o-mini", "prompt": "classroom"}],
        "output": [_BLOCKLIST],
        "pii": "redact",
    },
}


@contextmanager
def safety_proxies(upstream_url: str, workers: int) -> Iterator[dict[str, RunningServer]]:
    """One proxy per path of PATHS, its only client checked by that path's policy (none for `limits`)."""
    digest = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    with contextlib.ExitStack() as stack:
        proxies = {}
        for path in PATHS:
            client = {"keys": [digest], **LIMITS, **({"safety": path} if path in POLICIES else {})}
            extra = {
                "AIPROXY_CLIENT_KEYS": json.dumps({"bench": client}),
                "AIPROXY_SAFETY_POLICIES": json.dumps(POLICIES),
            }
            proxies[path] = stack.enter_context(proxy_server(upstream_url, workers, extra=extra))
        yield proxies

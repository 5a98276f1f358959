"""Which credential pays for a provider call: the client's own, when its key store entry names one
for the upstream (`upstream_credentials`, service.governance.auth), else the upstream's.

The choice is made where the provider asks for its key, during the call, and noted on the call's
usage record (`credential`: the secret's name, never its value), so records, metrics and the
dashboard say which credential paid.
"""

from __future__ import annotations

from service.core import request_state
from service.governance.usage import note_credential


def chosen(upstream: str, default: str) -> str:
    """The name of the secret the current request's call to `upstream` uses."""
    state = request_state.current()
    named = state.upstream_credentials.get(upstream) if state is not None else None
    credential = named or default
    note_credential(credential)
    return credential

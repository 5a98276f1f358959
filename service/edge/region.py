"""Where a request comes from: its region, an ISO 3166-1 alpha-2 country code, on its state
(`RequestState.region`), which model groups route by (service.gateway.routing).

The edge reads it from the request header AIPROXY_REGION_HEADER names, only when that is set:
without it no header is read, so a client cannot choose its region by sending one. A deployment
sets it only behind something that replaces whatever a client sent: the CDK stack's WAF inserts
`x-amzn-waf-aiproxy-region` from the caller's address and blocks requests that bring a header
of its own prefix (infra_cdk/edge.py). A value that is not a country code counts as unknown.

The seam for other sources: whatever authenticates the request may set `state.region` after the
edge has (an end-user token's region claim wins over the header).
"""

from __future__ import annotations

from service.config.model_aliases import REGION


def environ_key(header: str | None) -> str | None:
    """The WSGI environ key of a header's name (`x-amzn-waf-aiproxy-region` ->
    `HTTP_X_AMZN_WAF_AIPROXY_REGION`), computed once; None when no header is read."""
    return "HTTP_" + header.upper().replace("-", "_") if header else None


def region_of(value: str | None) -> str | None:
    """The country code in a header's value, upper-cased; None for anything else."""
    if not value:
        return None
    code = value.strip().upper()
    return code if REGION.fullmatch(code) else None

"""A client's answer cache, as its key store entry asks for it (`service.governance.auth`):

    "cache": {"ttl_s": 3600, "max_answer_bytes": 1048576, "namespace": "graders"},
    "cache_nondeterministic": true

Without `cache` the client's answers are never cached. `namespace` shares the entries between the
clients that name the same one (without it, each client has its own); `cache_nondeterministic`
also keeps sampled answers (temperature above 0, several choices), which are otherwise kept only
when the request says `Cache-Control: max-age=...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL_S = 3600
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
MAX_TTL_S = 30 * 24 * 3600
MAX_ANSWER_BYTES = 64 * 1024 * 1024
NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FIELDS = ("ttl_s", "max_answer_bytes", "namespace")


@dataclass(frozen=True)
class CacheSettings:
    ttl_s: int = DEFAULT_TTL_S
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    namespace: str | None = None  # shared with the clients naming the same; None: the client's own
    nondeterministic: bool = False  # keep sampled answers too

    def owner(self, client: str) -> str:
        """Whose entries a request reads and writes: the shared namespace, else the client's own
        (prefixed apart, so a namespace can never read a client's entries by taking its name)."""
        return f"namespace:{self.namespace}" if self.namespace else f"client:{client}"


def parse_cache_settings(entry: dict[str, Any], where: str) -> CacheSettings | None:
    """The cache of a key store entry, or None when it has none; ValueError names what is wrong."""
    nondeterministic = entry.get("cache_nondeterministic", False)
    if not isinstance(nondeterministic, bool):
        raise ValueError(f'{where}: "cache_nondeterministic" must be true or false')
    raw = entry.get("cache")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f'{where}: "cache" must be an object like {{"ttl_s": 3600}}')
    unknown = [name for name in raw if name not in FIELDS]
    if unknown:
        allowed = ", ".join(FIELDS)
        raise ValueError(f'{where}: "cache" has {len(unknown)} unknown field(s); allowed: {allowed}')
    namespace = raw.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not NAMESPACE.match(namespace)):
        raise ValueError(
            f'{where}: "cache.namespace" must be 1 to 64 letters, digits, ".", "_" or "-", '
            "starting with a letter or digit"
        )
    return CacheSettings(
        ttl_s=_whole(raw, "ttl_s", DEFAULT_TTL_S, MAX_TTL_S, where),
        max_answer_bytes=_whole(raw, "max_answer_bytes", DEFAULT_MAX_ANSWER_BYTES, MAX_ANSWER_BYTES, where),
        namespace=namespace,
        nondeterministic=nondeterministic,
    )


def _whole(raw: dict[str, Any], name: str, default: int, high: int, where: str) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f'{where}: "cache.{name}" must be a whole number from 1 to {high:,}')
    return value

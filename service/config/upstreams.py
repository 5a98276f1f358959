"""AIPROXY_UPSTREAMS: the named OpenAI-compatible upstreams besides the default, parsed once at
start-up into `Upstream` values (docs/routing.md, "Named upstreams").

An upstream is of one of two types: `openai` (the default: a base URL and a key) or `vertex`
(Google Vertex AI's OpenAI-compatible endpoint, derived from `project` and `location`, reached with
an OAuth access token made from the service account key in `credentials_secret`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from service.config.parsers import url
from service.config.setting import SettingsError

# The fields an upstream's object may have, and the JSON type of each.
_FIELDS: dict[str, type] = {
    "base_url": str,
    "key_secret": str,
    "key_env": str,
    "key_header": str,
    "headers": dict,
    "query": dict,
    "timeout": float,
    "stream_usage": bool,
    "type": str,
    "project": str,
    "location": str,
    "credentials_secret": str,
}
TYPES = ("openai", "vertex")
# Fields only one type has: an `openai` upstream has a key, a `vertex` one a service account.
_ONLY = {
    "openai": ("project", "location", "credentials_secret"),
    "vertex": ("key_secret", "key_env", "key_header"),
}
# A project id or a location (`us-central1`, `global`).
_GOOGLE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_EXAMPLE = '{"azure": {"base_url": "https://x.openai.azure.com/openai/v1", "key_secret": "azure_api_key"}}'


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible upstream of AIPROXY_UPSTREAMS, reached with models named `<name>/<model>`."""

    name: str
    base_url: str
    key_secret: str | None = None  # a secret's name (read as every secret is), holding the key
    key_env: str | None = None  # or the environment variable (or config.txt line) holding it
    key_header: str = "Authorization"  # `Authorization: Bearer <key>`, or the key alone in this header
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (never the key's header)
    query: tuple[tuple[str, str], ...] = ()  # added to every request's URL (Azure's api-version)
    timeout: float | None = None  # else AIPROXY_UPSTREAM_TIMEOUT
    stream_usage: bool = True  # whether it accepts stream_options.include_usage
    type: str = "openai"  # or "vertex": a Google service account's access token instead of a key
    project: str | None = None  # vertex: the Google Cloud project
    location: str | None = None  # vertex: the region (`us-central1`) or `global`
    credentials_secret: str | None = None  # vertex: the secret holding the service account's JSON key

    @property
    def default_credential(self) -> str:
        """The secret (or, with key_env, the variable) its requests use unless a client names its own."""
        if self.type == "vertex":
            return self.credentials_secret or f"{self.name}_service_account"
        return self.key_env or self.key_secret or f"{self.name}_api_key"


def vertex_base_url(project: str, location: str) -> str:
    """Vertex AI's OpenAI-compatible base URL for a project and location (`/chat/completions` follows)."""
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    return f"https://{host}/v1/projects/{project}/locations/{location}/endpoints/openapi"


def parse_upstreams(name: str, raw: str) -> dict[str, Upstream]:
    """The upstreams of the setting `name`'s JSON text; SettingsError naming the one at fault."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SettingsError(f"{name} is not valid; use a JSON object of upstream names, e.g. {_EXAMPLE}")
    return {upstream: _upstream(name, upstream, entry) for upstream, entry in data.items()}


def _upstream(name: str, upstream: str, entry: Any) -> Upstream:
    where = f"{name}: upstream {upstream!r}"
    if not _NAME.fullmatch(upstream):
        raise SettingsError(f"{name}: an upstream's name must be 1 to 32 lower-case letters, digits, - or _")
    if upstream == "bedrock":
        raise SettingsError(f"{where}: 'bedrock' names Amazon Bedrock; choose another name")
    if not isinstance(entry, dict):
        raise SettingsError(f"{where} needs an object with base_url (or type vertex, project and location)")
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise SettingsError(f"{where} has unknown fields {unknown}; allowed: {', '.join(_FIELDS)}")
    upstream_type = entry.get("type", "openai")
    if upstream_type not in TYPES:
        raise SettingsError(f"{where}: type must be one of {', '.join(TYPES)}")
    misplaced = sorted(set(entry) & set(_ONLY[upstream_type]))
    if misplaced:
        raise SettingsError(f"{where}: an upstream of type {upstream_type} has no {', '.join(misplaced)}")
    for field_name, kind in _FIELDS.items():
        value = entry.get(field_name)
        if value is None:
            continue
        wrong = (kind is float and (isinstance(value, bool) or not isinstance(value, int | float))) or (
            kind is not float and not isinstance(value, kind)
        )
        if wrong:
            raise SettingsError(f"{where}: {field_name} must be {kind.__name__}")
    headers = _text_pairs(where, "headers", entry.get("headers") or {})
    query = _text_pairs(where, "query", entry.get("query") or {})
    if entry.get("key_secret") and entry.get("key_env"):
        raise SettingsError(f"{where}: give key_secret or key_env, not both")
    timeout = entry.get("timeout")
    if timeout is not None and not 0.1 <= timeout <= 3600:
        raise SettingsError(f"{where}: timeout must be from 0.1 to 3600 seconds")
    if upstream_type == "vertex":
        for field_name in ("project", "location"):
            if not _GOOGLE_NAME.fullmatch(entry.get(field_name) or ""):
                raise SettingsError(
                    f"{where}: a vertex upstream needs {field_name}, lower-case letters, digits and -"
                )
        base_url = entry.get("base_url") or vertex_base_url(entry["project"], entry["location"])
    elif "base_url" not in entry:
        raise SettingsError(f"{where} needs an object with base_url")
    else:
        base_url = entry["base_url"]
    return Upstream(
        name=upstream,
        base_url=url(f"{where}: base_url", base_url),
        key_secret=entry.get("key_secret"),
        key_env=entry.get("key_env"),
        key_header=entry.get("key_header") or "Authorization",
        headers=headers,
        query=query,
        timeout=None if timeout is None else float(timeout),
        stream_usage=entry.get("stream_usage", True),
        type=upstream_type,
        project=entry.get("project"),
        location=entry.get("location"),
        credentials_secret=entry.get("credentials_secret"),
    )


def _text_pairs(where: str, field_name: str, pairs: dict[Any, Any]) -> tuple[tuple[str, str], ...]:
    """A JSON object of names to text as pairs; no line break, which would split a header."""
    if not all(isinstance(k, str) and isinstance(v, str) and "\n" not in k + v for k, v in pairs.items()):
        raise SettingsError(f"{where}: {field_name} must map names to text")
    return tuple(pairs.items())

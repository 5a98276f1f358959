"""AI Proxy: an OpenAI-compatible LLM gateway with rubric assessment. `create_app()` builds it.

The gunicorn master imports `service.config.settings` and `service.ops.logformat` to read its configuration
and never serves a request, so this package's import stays light: Flask, the HTTP clients and the routes
load in the workers only, and the master, which every worker is forked from, stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.app import ProxyApp
    from service.config.secrets import SecretStore
    from service.config.settings import Settings


def create_app(settings: Settings | None = None, secrets: SecretStore | None = None) -> ProxyApp:
    """Build the app from `settings` (default: environment, then config.txt)."""
    from service.app import create_app as build

    return build(settings, secrets)

"""The app factory: settings, secrets, logging, the request pipeline, error handlers and every route."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from service import openapi, relay, runtime
from service.auth import client_gate
from service.errors import register_error_handlers
from service.observability import configure_logging, install_honeybadger
from service.pipeline import RequestPipeline
from service.routes import assessment, gateway, status
from service.secrets import HONEYBADGER_API_KEY, SecretStore
from service.settings import Settings, load_settings

log = logging.getLogger(__name__)


class _JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with bodies kept in the order they were built (rubric rows, errors), and
    nesting too deep for Python's parser treated as invalid JSON (a 400), not a crash (a 500)."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(settings: Settings | None = None, secrets: SecretStore | None = None) -> Flask:
    """Build the app from `settings` (default: environment, then config.txt)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    secrets = secrets or SecretStore(
        settings.source,
        settings.environment_type,
        settings.environment,
        ttl=settings.secrets_ttl,
    )

    app = Flask(__name__)
    app.json = _JSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    runtime.attach(app, runtime.Runtime(settings=settings, secrets=secrets))

    gate = client_gate(app, secrets, settings)
    register_error_handlers(app)
    install_honeybadger(
        app,
        lambda: secrets.get(HONEYBADGER_API_KEY),
        rotates=secrets.uses_aws,
        endpoint=settings.honeybadger_endpoint,
        environment=settings.environment_type or "local",
        known_secrets=secrets.known_values,
        force_sync=settings.source.get("HONEYBADGER_FORCE_SYNC", "").lower() in ("1", "true"),
    )

    for blueprint in (status.blueprint, gateway.blueprint, openapi.blueprint, assessment.blueprint):
        app.register_blueprint(blueprint)
    # Request ids, client keys and limits, access lines; the relay routes bypass Flask.
    app.wsgi_app = RequestPipeline(app, gate, relay.RELAY_ROUTES)
    return app

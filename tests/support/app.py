"""Build the app from explicit settings: no process environment, no config.txt."""

from __future__ import annotations

from flask import Flask

from service import create_app
from service.config.secrets import SecretStore
from service.config.settings import Settings, load_settings


def make_settings(**values: str) -> Settings:
    return load_settings(environ={}, config_file=None, **values)


def make_app(secrets: SecretStore | None = None, **values: str) -> Flask:
    # Not app.testing: that re-raises exceptions instead of answering 500 as production does.
    return create_app(make_settings(**values), secrets=secrets)

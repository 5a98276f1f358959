"""What the running app holds: its settings and its secret store, reachable from any request."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from service.secrets import SecretStore
from service.settings import Settings

_EXTENSION = "aiproxy"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    secrets: SecretStore


def attach(app: Flask, runtime: Runtime) -> None:
    app.extensions[_EXTENSION] = runtime


def runtime() -> Runtime:
    return current_app.extensions[_EXTENSION]


def settings() -> Settings:
    return runtime().settings


def secrets() -> SecretStore:
    return runtime().secrets

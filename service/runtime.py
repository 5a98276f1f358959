"""What the running app holds: its settings, its secret store and its clients, reachable from any request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask, current_app

from service.secrets import SecretStore
from service.settings import Settings

_EXTENSION = "aiproxy"
_create_lock = threading.Lock()

T = TypeVar("T")


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


def app_scoped(name: str, factory: Callable[[Runtime], T]) -> T:
    """The current app's one `name` object, made by `factory(runtime())` on first use.

    Kept in `current_app.extensions`; the lock makes concurrent first requests share one object.
    """
    extensions = current_app.extensions
    value = extensions.get(name)
    if value is None:
        with _create_lock:
            value = extensions.get(name)
            if value is None:
                value = extensions[name] = factory(runtime())
    return value

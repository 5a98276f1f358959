"""What a setting is: how one is declared (`setting`), the row of the settings table it becomes
(`Setting`), and `SettingsError`, the one-line refusal of a value the service cannot run with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# How a setting's text becomes its value: called with the variable's name (for the error) and the
# text; raises SettingsError naming the variable and what it accepts.
Parser = Callable[[str, str], Any]


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message is one line."""


@dataclass(frozen=True)
class Setting:
    env: str  # the variable's name in the environment and in config.txt
    attr: str  # the attribute of `Settings` that holds the parsed value
    default: str
    parse: Parser
    help: str


def setting(env: str, default: str, parse: Parser, help: str, *, secret: bool = False) -> Any:
    """Declare a field of `Settings`: the variable it is read from, its default (as text), how
    the text is parsed (raising SettingsError naming the variable) and a one-line description.
    A `secret` one is left out of the settings' repr, so it never reaches a log line."""
    return field(repr=not secret, metadata={"env": env, "default": default, "parse": parse, "help": help})

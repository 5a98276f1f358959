"""`config.txt`: the settings file read after the process environment, one `KEY=VALUE` a line."""

from __future__ import annotations

import os
from pathlib import Path

from service.config.setting import SettingsError

DEFAULT_CONFIG_FILE = "config.txt"  # in the working directory


def read_config_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse `KEY=VALUE` lines; blank lines and `#` comments are skipped. Missing file: `{}`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        if not sep or not key:
            raise SettingsError(f"{path} line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values

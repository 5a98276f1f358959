"""Text made safe for where it goes: HTTP header values and log lines.

Values from clients and upstreams (a model name, a path, an upstream's header) can hold what a
header or a log line cannot carry: CR and LF (a header cut in two, a log line a client forged),
NUL and other control characters, and, in a header, anything outside ASCII. Such a character is
written as its Python backslash escape (`\\r`, `\\n`, `\\x00`, `\\u2603`); every other character is
kept, so a value that was fine goes out unchanged, and a bad one is still readable, on one line,
and never a failure.

Why backslash escapes and not percent-encoding: paths are logged percent-decoded and a literal
`%` is common in them, while `\\n` reads the same in the text log as in the JSON one. A backslash
itself is kept, not doubled (a valid value never changes), so a client that typed `\\n` reads the
same as one that sent a line break; the JSON log format holds every value exactly.

Both functions are called for every header and every log line, so a value with nothing to escape
(nearly all of them) costs two C-level checks and no copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# What RFC 9110 allows in a header name (a token); gunicorn refuses any other name.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _escaped(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def header_value(value: str) -> str:
    """`value` as an HTTP header value: printable ASCII kept, anything else escaped."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(char if " " <= char <= "~" else _escaped(char) for char in value)


def log_text(value: str) -> str:
    """`value` as part of one log line: printable characters kept (any script), control characters,
    line and paragraph separators, and invisible format characters escaped."""
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else _escaped(char) for char in value)


def sendable_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` as any WSGI server sends them: every value through `header_value`.

    A name that is no HTTP token cannot be encoded into one: ValueError, raised before a server
    has seen any of the headers (gunicorn keeps those it accepted before refusing one).
    """
    sendable = []
    for name, value in headers:
        if name not in _CHECKED_NAMES:
            _check_name(name)
        if value.__class__ is not str or not (value.isascii() and value.isprintable()):
            value = header_value(str(value))
        sendable.append((name, value))
    return sendable


# Names found valid: they come from the code and an upstream allow-list, so there are few, and a
# name met again costs a set lookup instead of a regular expression.
_CHECKED_NAMES: set[str] = set()
_MAX_CHECKED_NAMES = 1024


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"{header_value(str(name))!r} cannot be an HTTP header name")
    if len(_CHECKED_NAMES) < _MAX_CHECKED_NAMES:
        _CHECKED_NAMES.add(name)

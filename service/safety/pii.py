"""Personal data in what a client sends: e-mail addresses, phone numbers and street addresses.

`found(text)` names the kinds present; `redact(text)` replaces each with `[EMAIL]`, `[PHONE]` or
`[ADDRESS]`. The patterns are compiled once and meant to catch what students type (US and
international phone numbers, "123 Main Street"-style addresses), not to parse every format: a
policy that must never miss one adds a blocklist pattern or a judge.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Grouped (+1 (555) 123-4567, 555.123.4567, +44 20 7946 0958) or 10 to 12 digits in a row; a
# number in a program (x = 12345678, 3.14159265358) is neither.
PHONE = re.compile(
    r"(?<![\w+.])(?:(?:\+?\d{1,3}[\s.-])?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{4}|\+?\d{10,12})(?![\w.])"
)
_STREET_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|"
    "circle|cir|highway|hwy|parkway|pkwy|calle|avenida"
)
ADDRESS = re.compile(
    rf"\b\d{{1,6}}\s+(?:[A-Za-z0-9'.-]+\s+){{1,4}}(?:{_STREET_TYPES})\b\.?"
    r"(?:,?\s+(?:apt|apartment|suite|unit|#)\s*\.?\s*\w+)?",
    re.IGNORECASE,
)
# In this order: an address's house number is not a phone number.
KINDS = (("email", EMAIL, "[EMAIL]"), ("address", ADDRESS, "[ADDRESS]"), ("phone", PHONE, "[PHONE]"))
_HINTS = re.compile(r"[@\d]")  # no digit and no @: nothing to find (most text), one cheap scan


def found(text: str) -> list[str]:
    """The kinds of personal data in `text` (`email`, `address`, `phone`), in that order."""
    if not _HINTS.search(text):
        return []
    return [kind for kind, pattern, _ in KINDS if pattern.search(text)]


def redact(text: str) -> str:
    if not _HINTS.search(text):
        return text
    for _, pattern, mark in KINDS:
        text = pattern.sub(mark, text)
    return text

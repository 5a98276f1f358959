"""The blocklist check: whole words (case-insensitive) or regular expressions, no network.

Compiled once, when the policy is parsed: the words into one alternation bounded by non-word
characters, so `ass` does not flag `class`; the patterns as given (case-insensitive too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from service.safety.check import PASSED, Check, Outcome, Services, known_fields, timeout

MAX_ITEMS = 10_000


@dataclass(frozen=True)
class Blocklist(Check):
    kind: ClassVar[str] = "blocklist"
    local: ClassVar[bool] = True
    words: re.Pattern[str] | None = None
    patterns: tuple[re.Pattern[str], ...] = ()

    def run(self, text: str, services: Services | None = None) -> Outcome:
        if self.words is not None and self.words.search(text):
            return Outcome(True, ("words",), {"matched": "words"})
        for index, pattern in enumerate(self.patterns):
            if pattern.search(text):
                return Outcome(True, ("patterns",), {"matched": "patterns", "pattern": index})
        return PASSED


def parse(entry: Mapping[str, Any], where: str) -> Blocklist:
    known_fields(entry, where, ("words", "patterns"))
    words, patterns = entry.get("words", []), entry.get("patterns", [])
    for name, items in (("words", words), ("patterns", patterns)):
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise ValueError(f"{where}: {name!r} must be a list of at most {MAX_ITEMS:,} strings")
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"{where}: {name}[{index}] must be a non-empty string")
    if not words and not patterns:
        raise ValueError(f"{where} needs 'words' or 'patterns'")
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            raise ValueError(f"{where}: patterns[{index}] is not a regular expression ({error})") from None
    alternation = "|".join(re.escape(word.strip()) for word in sorted(set(words), key=len, reverse=True))
    return Blocklist(
        timeout=timeout(entry, where),
        words=re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE) if words else None,
        patterns=tuple(compiled),
    )

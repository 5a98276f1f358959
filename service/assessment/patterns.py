"""Regular expressions for the OpenAPI schemas of the assessment fields (`fields`), built from the
same words and limits the fields are read with.

Each means the same in ECMA 262 and Python regular expressions, and uses no look-around (schema
testers such as schemathesis generate values from these patterns).
"""

from __future__ import annotations

# White space that Python's str.strip() removes and both regex flavours know, for the fields read
# after stripping: ASCII's, and the Unicode spaces.
WS = r"[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x1c-\x1f]"
NOT_BLANK = r"\S"
# A printable character other than a space (Python's str.isprintable() also refuses the format,
# private-use and unassigned characters, which no pattern lists).
PRINTABLE = r"[^\s\x00-\x1f\x7f-\x9f]"


def blank_or(pattern: str) -> str:
    """Text that is `pattern` with white space around it, or only white space (the default)."""
    return rf"^{WS}*({pattern})?{WS}*$"


def trimmed(pattern: str) -> str:
    """Text that is `pattern` with white space around it."""
    return rf"^{WS}*{pattern}{WS}*$"


def any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


def one_of_words(words: tuple[str, ...]) -> str:
    """Any of `words` in any case: the one-digit words as one class, then the others."""
    digits = "".join(sorted(word for word in words if len(word) == 1 and word.isdigit()))
    others = [any_case(word) for word in words if word and word not in digits]
    return "|".join(([f"[{digits}]"] if digits else []) + others)


def _digit(first: int, last: int) -> str:
    if first == last:
        return str(first)
    return f"[{first}{last}]" if last == first + 1 else f"[{first}-{last}]"


def decimal_range(low: int, high: int) -> str:
    """The whole numbers from `low` to `high` (0 <= low <= high) in decimal, no leading zeros,
    as alternatives: 1 to 10 is `[1-9]|10`."""
    parts = []
    while low <= high:
        step = 1  # the widest block of numbers starting at `low` that one pattern can say
        while low and low % (step * 10) == 0 and low + step * 10 - 1 <= high:
            step *= 10
        block_end = (low // (step * 10) + 1) * step * 10  # where the digit at `step` wraps
        count = (min(high + 1, block_end) - low) // step
        prefix = str(low // (step * 10) or "")
        first = low // step % 10
        parts.append(prefix + _digit(first, first + count - 1) + "[0-9]" * (len(str(step)) - 1))
        low += count * step
    return "|".join(parts)


def _group(alternatives: str) -> str:
    return f"({alternatives})" if "|" in alternatives else alternatives


def whole_number(low: int, high: int) -> str:
    """`low` to `high` in ASCII digits, with a plus sign and leading zeros allowed."""
    return rf"\+?0*{_group(decimal_range(low, high))}"


def number_from_zero(high: int) -> str:
    """0 to the whole number `high` in decimal notation, a negative zero included (exponents are
    read too, but not described)."""
    below = _group(decimal_range(0, high - 1))
    return rf"\+?(0*{below}(\.[0-9]*)?|0*\.[0-9]+|0*{high}(\.0*)?)|-(0+(\.0*)?|0*\.0+)"


def printable_line(max_chars: int) -> str:
    """One to `max_chars` printable characters, spaces inside only."""
    return rf"{PRINTABLE}(( |{PRINTABLE}){{0,{max_chars - 2}}}{PRINTABLE})?"

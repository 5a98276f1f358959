"""Remove JavaScript comments without touching strings, template literals or regex literals.

A small scanner, not a parser: it knows just enough of the language to tell a comment from the
same characters inside a literal. Line numbers never change (a removed block comment leaves its
newlines), so a grader's "line 12" still points at line 12 of the student's program.

Whether `/` starts a regex literal or is a division depends on the token before it: after a
value (a name, a number, a literal, `)` or `]`) it divides; after an operator, an opening
bracket, a keyword such as `return`, or at the start, it begins a regex. `}` is taken as the end
of a block (regex follows), which is right for the statements student programs are made of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.core.cpu import pause

# Characters scanned between pauses that let the worker serve other requests (service.core.cpu).
_PIECE = 8192

# Keywords after which an expression (so possibly a regex) begins rather than a division.
_KEYWORDS_BEFORE_EXPRESSION = frozenset(
    {
        "await", "case", "delete", "do", "else", "in", "instanceof",
        "new", "return", "throw", "typeof", "void", "yield",
    }
)  # fmt: skip


@dataclass
class _Code:
    """Program text; inside a template's `${...}` it ends at the `}` matching depth 0."""

    in_template: bool
    depth: int = 0


class _Template:
    """The text of a template literal, between backticks."""


_TEMPLATE_TEXT = re.compile(r"[^\\`$]*")
_WORD = re.compile(r"[\w$\u0080-\U0010ffff]+")
_NUMBER = re.compile(r"[\w$.\u0080-\U0010ffff]+")  # 1.5, 0x1F, 1e3: dots belong to the number


def _match_at(pattern: re.Pattern[str], source: str, at: int) -> re.Match[str]:
    """The match of `pattern` at `at`, where it always matches (the caller saw its first character)."""
    match = pattern.match(source, at)
    assert match is not None, f"{pattern.pattern!r} does not match at {at}"
    return match


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c in "_$" or ord(c) > 127


def remove_comments(source: str) -> str:
    out: list[str] = []
    stack: list[_Code | _Template] = [_Code(in_template=False)]
    # The last significant token: "start", "value" (a division may follow), "operator" or a word.
    previous = "start"
    comment_on_line = False
    i, n = 0, len(source)
    no_regex_before = 0

    def trim_trailing_blanks() -> None:
        while out and out[-1] in " \t":
            out.pop()

    next_pause = _PIECE
    while i < n:
        if i >= next_pause:
            pause()
            next_pause = i + _PIECE
        mode = stack[-1]
        c = source[i]

        if isinstance(mode, _Template):
            if c == "\\":
                out.append(source[i : i + 2])
                i += 2
            elif c == "`":
                out.append(c)
                stack.pop()
                previous = "value"
                i += 1
            elif source.startswith("${", i):
                out.append("${")
                stack.append(_Code(in_template=True))
                previous = "operator"
                i += 2
            else:
                end = _match_at(_TEMPLATE_TEXT, source, i).end()  # plain text up to \\, ` or $
                out.append(source[i : max(end, i + 1)])
                i = max(end, i + 1)
            continue

        # Program text.
        if c == "\n":
            if comment_on_line:
                trim_trailing_blanks()
                comment_on_line = False
            out.append(c)
            i += 1
        elif c in " \t\r\f\v\u00a0\ufeff":
            out.append(c)
            i += 1
        elif source.startswith("//", i):
            while i < n and source[i] not in "\r\n":
                i += 1
            trim_trailing_blanks()
            comment_on_line = True
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = n if end < 0 else end + 2
            newlines = source.count("\n", i, end)
            if newlines:
                trim_trailing_blanks()
                out.append("\n" * newlines)
            else:
                end = _tidy_inline_gap(out, source, end)
            comment_on_line = True
            i = end
        elif c == "/" and previous != "value" and i >= no_regex_before:
            regex_end = _regex_end(source, i)
            if regex_end is None:  # not a regex after all (no closing slash on the line): division
                out.append(c)
                previous = "operator"
                # Nor is any later `/` on this line: without this, a long line of such slashes
                # would be rescanned to its end once per slash.
                line_end = source.find("\n", i)
                no_regex_before = n if line_end < 0 else line_end
                i += 1
            else:
                out.append(source[i:regex_end])
                previous = "value"
                i = regex_end
        elif c in "'\"":
            end = _string_end(source, i)
            out.append(source[i:end])
            previous = "value"
            i = end
        elif c == "`":
            out.append(c)
            stack.append(_Template())
            i += 1
        elif _is_word_char(c):
            word = _match_at(_NUMBER if c.isdigit() else _WORD, source, i).group()
            i += len(word)
            out.append(word)
            previous = word if word in _KEYWORDS_BEFORE_EXPRESSION else "value"
        elif c == "}" and mode.in_template and mode.depth == 0:
            out.append(c)
            stack.pop()  # back into the template's text
            i += 1
        else:
            if c == "{":
                mode.depth += 1
            elif c == "}":
                mode.depth = max(0, mode.depth - 1)
            if source.startswith(("++", "--"), i):
                # `a++ / 2` divides; a prefix `++` is never followed by `/` in valid code.
                out.append(source[i : i + 2])
                previous = "value"
                i += 2
                continue
            out.append(c)
            previous = "value" if c in ")]" else "operator"
            i += 1

    if comment_on_line:
        trim_trailing_blanks()
    return "".join(out)


def _tidy_inline_gap(out: list[str], source: str, end: int) -> int:
    """Close up around a removed one-line block comment; return where scanning resumes.

    `a/**/b` becomes `a b` (a comment separates tokens), `x = 1 /* c */ + 2` becomes `x = 1 + 2`
    and `f(/* none */)` becomes `f()`.
    """
    before = out[-1][-1:] if out else ""
    after = source[end : end + 1]
    if not before or not after:
        return end
    if before in " \t":
        if after in " \t":
            return end + 1
        if after in ")]},;":
            while out and out[-1] in " \t":
                out.pop()
        return end
    if not after.isspace() and before not in "([{," and after not in ")]},;":
        out.append(" ")
    return end


def _string_end(source: str, start: int) -> int:
    """Index just past the string literal starting at `start` (or the end of its line if unclosed)."""
    quote = source[start]
    i = start + 1
    while i < len(source):
        c = source[i]
        if c == "\\":
            i += 2
        elif c == quote:
            return i + 1
        elif c == "\n":
            return i  # unclosed: stop before the newline so line handling stays right
        else:
            i += 1
    return len(source)


def _regex_end(source: str, start: int) -> int | None:
    """Index just past the regex literal (flags included) at `start`, or None if there is none."""
    i = start + 1
    in_class = False
    while i < len(source):
        c = source[i]
        if c == "\n":
            return None
        if c == "\\":
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            i += 1
            while i < len(source) and _is_word_char(source[i]):
                i += 1
            return i
        i += 1
    return None

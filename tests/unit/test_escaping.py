"""Header values and log fields (`service.core.escaping`): what cannot be carried is escaped, the rest
kept."""

import pytest

from service.core.escaping import header_value, log_text, sendable_headers


@pytest.mark.parametrize(
    ("value", "in_header", "in_log"),
    [
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini", "openai/gpt-4o-mini"),  # unchanged, not copied
        ("", "", ""),
        ("gpt-☃", "gpt-\\u2603", "gpt-☃"),
        ("café", "caf\\xe9", "café"),
        ("a\r\nb", "a\\r\\nb", "a\\r\\nb"),
        ("a\x00b\tc\x7f", "a\\x00b\\tc\\x7f", "a\\x00b\\tc\\x7f"),
        ("line\u2028sep\u202eltr", "line\\u2028sep\\u202eltr", "line\\u2028sep\\u202eltr"),
        ("\U0001f600 \\n", "\\U0001f600 \\n", "\U0001f600 \\n"),  # a backslash is kept as it is
    ],
)
def test_what_a_header_or_log_line_cannot_carry_is_escaped(value, in_header, in_log):
    assert header_value(value) == in_header
    assert log_text(value) == in_log


def test_plain_values_are_returned_as_they_are():
    value = "POST /v1/chat/completions 200"
    assert header_value(value) is value
    assert log_text(value) is value


def test_sendable_headers_escape_values_and_refuse_names_no_header_can_have():
    assert sendable_headers([("x-aiproxy-deployment", "openai/gpt\n☃"), ("Content-Length", 12)]) == [
        ("x-aiproxy-deployment", "openai/gpt\\n\\u2603"),
        ("Content-Length", "12"),
    ]
    for name in ("Bad Name", "x-\u2603", "a\r\nSet-Cookie", ""):
        with pytest.raises(ValueError, match="cannot be an HTTP header name"):
            sendable_headers([("Content-Type", "text/plain"), (name, "x")])

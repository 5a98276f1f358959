"""JavaScript comment removal: comments go, literals stay byte for byte, line numbers never move."""

from __future__ import annotations

import pytest

from service.assessment.comments import remove_comments
from service.assessment.samples import sample


def removed(source: str) -> str:
    result = remove_comments(source)
    assert result.count("\n") == source.count("\n"), "line numbers moved"
    return result


def test_line_comment_goes_and_its_line_stays():
    assert removed("var a = 1; // the score\nvar b = 2;") == "var a = 1;\nvar b = 2;"


def test_a_line_that_was_only_a_comment_stays_as_an_empty_line():
    assert removed("one();\n// explain\n  // indented too\ntwo();") == "one();\n\n\ntwo();"


def test_block_comment_leaves_its_newlines():
    source = "start();\n/* a\n   long\n   note */ middle();\nend();"
    assert removed(source) == "start();\n\n\n middle();\nend();"
    assert removed(source).splitlines()[4] == "end();"


def test_inline_block_comment_keeps_tokens_apart():
    assert removed("a/**/b") == "a b"
    assert removed("x = 1 /* one */ + 2;") == "x = 1 + 2;"
    assert removed("f(/* no args */);") == "f();"


@pytest.mark.parametrize(
    "source",
    [
        'var url = "http://example.org/path";',
        "var s = '// not a comment';",
        'var s = "/* not a comment */";',
        'var s = "escaped \\" quote // still inside";',
        "var s = 'it\\'s // inside';",
    ],
)
def test_comment_markers_inside_strings_are_kept(source):
    assert removed(source) == source


def test_string_with_slashes_then_a_real_comment():
    assert removed('fetch("https://example.org//x"); // load it') == 'fetch("https://example.org//x");'


def test_template_literal_keeps_comment_markers_and_nested_expressions_lose_real_comments():
    source = "msg = `a /* b */ // c ${score /* real */ + 1} d`; // tail"
    assert removed(source) == "msg = `a /* b */ // c ${score + 1} d`;"


def test_nested_template_literals():
    source = "t = `outer ${cond ? `inner // ${x} /* y */` : '/*'} end`; /* gone */"
    assert removed(source) == "t = `outer ${cond ? `inner // ${x} /* y */` : '/*'} end`;"


def test_object_literal_inside_template_expression():
    source = "s = `${ {a: 1}.a } // kept`; // gone"
    assert removed(source) == "s = `${ {a: 1}.a } // kept`;"


def test_multiline_template_keeps_its_lines():
    source = 'html = `\n  <a href="//cdn">  \n`; // done\nnext();'
    assert removed(source) == 'html = `\n  <a href="//cdn">  \n`;\nnext();'


@pytest.mark.parametrize(
    "source",
    [
        "var re = /\\/\\//g;",
        "var re = /https?:\\/\\//;",
        "if (/[/*]+/.test(s)) {}",
        "return /a\\/*b/.exec(s);",
        "x = [/\\/\\/ comment-like/, /\\*\\//];",
        "ok = !/^\\/\\//.test(path);",
    ],
)
def test_regex_literals_containing_comment_markers_are_kept(source):
    assert removed(source) == source


def test_regex_followed_by_a_real_comment():
    assert removed("var re = /[/]/g; // slash class") == "var re = /[/]/g;"


def test_division_is_not_taken_for_a_regex():
    assert (
        removed("half = total / 2; // half\nq = (a) / b / c; // two") == "half = total / 2;\nq = (a) / b / c;"
    )
    assert removed("n = arr[i] / 2 /* avg */;") == "n = arr[i] / 2;"
    assert removed("x = i++ / 2; // post") == "x = i++ / 2;"


def test_regex_after_keyword_and_after_block():
    assert removed("return /x\\/\\/y/.test(s); // c") == "return /x\\/\\/y/.test(s);"
    assert (
        removed("if (a) { b(); }\n/\\/\\//.test(s) && go(); // c")
        == "if (a) { b(); }\n/\\/\\//.test(s) && go();"
    )


def test_unterminated_block_comment_removes_the_rest_but_keeps_lines():
    assert removed("a();\n/* never closed\nb();\n") == "a();\n\n\n"


def test_unterminated_string_ends_at_its_line():
    assert removed("s = 'oops // no close\nt = 1; // gone") == "s = 'oops // no close\nt = 1;"


def test_windows_line_endings_are_kept():
    assert removed("a = 1; // c\r\nb = 2;\r\n") == "a = 1;\r\nb = 2;\r\n"


def test_code_without_comments_is_unchanged():
    code = "function f(a, b) {\n  return a / b;\n}\nvar s = `${f(4, 2)}`;\nvar r = /a|b/g;\n"
    assert removed(code) == code


def test_sample_program_comments_are_removed_and_literals_survive():
    code = sample().code
    result = removed(code)
    assert "Catch the Stars" not in result  # the header comment
    assert "missed one" not in result
    assert '"catch-the-stars://high-score"' in result  # "//" inside a string
    assert "`Game over! /* ${score} stars */ Best: ${best}. Press R.`" in result  # "/*" in a template
    assert "/^r$/i.test(event.key)" in result


def test_only_comments_leaves_blank_lines():
    assert removed("// one\n/* two\nthree */\n").strip() == ""

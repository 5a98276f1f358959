import json

import pytest

from service.gateway.redaction import redactor
from service.ops.observability import FILTERED, scrub


def test_sensitive_keys_are_filtered_at_any_depth_and_case():
    data = {
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "json"},
        "params": {"api-key": ["v"], "user_password": "p", "Client-Secret": "s", "model": "gpt"},
        "list": [{"Cookie": "c"}, "plain"],
    }
    cleaned = scrub(data)
    assert cleaned["headers"] == {"Authorization": FILTERED, "X-Api-Key": FILTERED, "Accept": "json"}
    assert cleaned["params"] == {
        "api-key": FILTERED,
        "user_password": FILTERED,
        "Client-Secret": FILTERED,
        "model": "gpt",
    }
    assert cleaned["list"] == [{"Cookie": FILTERED}, "plain"]
    assert data["headers"]["Authorization"] == "Bearer x"  # the input is not changed


def test_known_secret_values_are_blanked_inside_strings():
    cleaned = scrub({"message": "key sk-abcdef123456 was refused", "n": 3}, ["sk-abcdef123456", ""])
    assert cleaned == {"message": f"key {FILTERED} was refused", "n": 3}


def test_short_values_are_not_treated_as_secrets():
    # A one-letter "secret" would blank every "a" in a report; real keys are long.
    assert scrub("a cat", ["a"]) == "a cat"


# --- the provider key in upstream answers (service.gateway.redaction) -------------------------------------

KEY = "sk-proj/abc+DEF-0123456789"


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04X}" for char in text)


@pytest.mark.parametrize(
    "spelling",
    [
        KEY,
        "sk\\u002dproj/abc+DEF-0123456789",
        "\\u0073k-proj\\/abc+DEF-0123456789",
        escaped(KEY),
        "sk-proj" + escaped("/abc") + "+DEF\\u002D0123456789",
        "sk\\\\u002dproj\\\\/abc+DEF-0123456789",  # JSON inside a JSON string
    ],
)
def test_every_json_spelling_of_the_key_is_blanked_and_the_json_stays_valid(spelling):
    body = ('{"message": "you sent ' + spelling + '.", "n": 1}').encode()
    cleaned = redactor(KEY).bytes(body)
    assert json.loads(cleaned) == {"message": "you sent [FILTERED].", "n": 1}
    assert redactor(KEY).text(body.decode()) == cleaned.decode()


def test_text_without_the_key_is_returned_as_it_is():
    body = b'{"message": "sk-proj is a prefix, \\u0041 an escape"}'
    assert redactor(KEY).bytes(body) is body
    assert redactor("short") is None  # a short "key" would blank ordinary words


def delta(content: str, index: int = 0) -> bytes:
    event = {"object": "chat.completion.chunk", "choices": [{"index": index, "delta": {"content": content}}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def relay(frames: list[bytes]) -> list[bytes]:
    events = redactor(KEY).stream()
    out = [sent for frame in frames for sent in events.feed(frame)]
    return out + list(events.flush())


def joined(frames: list[bytes], index: int = 0) -> str:
    choices = [json.loads(frame[6:])["choices"][0] for frame in frames if frame.startswith(b"data: {")]
    return "".join(choice["delta"]["content"] for choice in choices if choice["index"] == index)


def test_a_key_split_across_events_is_blanked_in_every_piece():
    frames = [delta("Key: " + KEY[:5]), delta(KEY[5:9]), delta(KEY[9:] + " ok"), b"data: [DONE]\n\n"]
    sent = relay(frames)
    assert len(sent) == 4
    assert joined(sent) == "Key: [FILTERED] ok"
    assert sent[-1] == b"data: [DONE]\n\n"


def test_a_key_split_between_interleaved_choices_is_blanked_per_choice():
    frames = [delta(KEY[:3], 0), delta(KEY[:12], 1), delta(KEY[3:], 0), delta(KEY[12:] + "!", 1)]
    sent = relay(frames)
    assert joined(sent, 0) == "[FILTERED]"
    assert joined(sent, 1) == "[FILTERED]!"


def test_an_event_ending_like_the_key_that_does_not_go_on_is_relayed_unchanged():
    frames = [delta("that is it"), delta(" s"), delta("k-project"), delta("fine " + KEY[:6])]
    events = redactor(KEY).stream()
    assert list(events.feed(frames[0])) == [frames[0]]  # nothing like the key: out at once
    assert list(events.feed(frames[1])) == []  # ends with the key's first letter: held
    assert list(events.feed(frames[2])) == [frames[1], frames[2]]  # not the key: both as they came
    assert list(events.feed(frames[3])) == []
    assert list(events.flush()) == [frames[3]]  # the stream ended: the key never completed


def test_split_tool_call_arguments_and_event_lines_are_kept_apart_and_blanked():
    def call(arguments: str) -> bytes:
        tool = {"index": 0, "function": {"arguments": arguments}}
        data = json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [tool]}}]})
        return b"event: chunk\ndata: " + data.encode() + b"\n\n"

    sent = relay([call('{"k": "' + KEY[:8]), call(escaped(KEY[8:]) + '"}')])
    assert all(frame.startswith(b"event: chunk\ndata: ") for frame in sent)
    arguments = "".join(
        json.loads(frame.split(b"data: ")[1])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for frame in sent
    )
    assert arguments == '{"k": "[FILTERED]"}'


def test_a_key_split_across_events_with_escapes_in_its_first_piece_is_blanked():
    first = delta("Key: sk-proj/").replace(b"sk-proj/", b"sk\\u002dproj\\/")
    sent = relay([first, delta(KEY[8:] + ".")])
    assert joined(sent) == "Key: [FILTERED]."

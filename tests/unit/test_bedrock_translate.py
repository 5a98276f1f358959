"""OpenAI chat-completions shapes to and from Bedrock Converse shapes, both ways."""

import base64
import json

import pytest

from service.core.errors import RequestRejected
from service.gateway.providers.bedrock.stream import ChoiceStream, ChunkWriter
from service.gateway.providers.bedrock.translate import chat_completion, choice_count, converse_request

PNG = b"\x89PNG\r\n\x1a\nfake image bytes"
MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def translate(**body):
    return converse_request({"model": "bedrock/" + MODEL_ID, **body}, MODEL_ID)


def rejected(**body) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        translate(**body)
    assert caught.value.status == 400
    return caught.value


def test_system_user_and_assistant_turns_keep_their_order():
    request = translate(
        messages=[
            {"role": "system", "content": "You grade programs."},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]
    )
    assert request["modelId"] == MODEL_ID
    assert request["system"] == [{"text": "You grade programs."}, {"text": "Be brief."}]
    assert request["messages"] == [
        {"role": "user", "content": [{"text": "first"}]},
        {"role": "assistant", "content": [{"text": "answer"}]},
        {"role": "user", "content": [{"text": "second"}]},
    ]
    assert "inferenceConfig" not in request and "toolConfig" not in request


def test_consecutive_turns_of_one_role_are_merged_because_converse_wants_alternation():
    request = translate(
        messages=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
    )
    assert request["messages"] == [{"role": "user", "content": [{"text": "one"}, {"text": "two"}]}]


def test_data_url_images_become_bytes():
    encoded = base64.b64encode(PNG).decode()
    request = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
                ],
            }
        ]
    )
    assert request["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
    ]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://example.org/cat.png", "data: URL"),
        ("data:image/tiff;base64,AAAA", "PNG, JPEG, GIF or WebP"),
        ("data:image/png;base64,not base64!", "invalid base64"),
    ],
)
def test_images_bedrock_cannot_take_are_a_400_naming_the_part(url, says):
    error = rejected(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    )
    assert says in error.message
    assert error.param == "messages[0].content[0].image_url.url"


def test_sampling_limits_and_stop_sequences():
    request = translate(
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        top_p=0.9,
        max_tokens=100,
        max_completion_tokens=50,
        stop="END",
    )
    assert request["inferenceConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "maxTokens": 50,  # max_completion_tokens, the newer name, wins over max_tokens
        "stopSequences": ["END"],
    }
    request = translate(messages=[{"role": "user", "content": "hi"}], max_tokens=7, stop=["a", "b"])
    assert request["inferenceConfig"] == {"maxTokens": 7, "stopSequences": ["a", "b"]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "hot"),
        ("temperature", 3),
        ("top_p", 1.5),
        ("max_tokens", 0),
        ("max_completion_tokens", 2.5),
        ("stop", [1]),
        ("n", 11),
        ("n", 0),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(field, value):
    body = {"model": "bedrock/" + MODEL_ID, "messages": [{"role": "user", "content": "hi"}], field: value}
    with pytest.raises(RequestRejected) as caught:
        choice_count(body)
        converse_request(body, MODEL_ID)
    assert caught.value.status == 400
    assert caught.value.param == field
    assert f"'{field}'" in caught.value.message


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (None, "messages"),
        ([], "messages"),
        (["hi"], "messages[0]"),
        ([{"role": "robot", "content": "hi"}], "messages[0].role"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], "messages[0].content[0]"),
        ([{"role": "tool", "content": "42"}], "messages[0].tool_call_id"),
    ],
)
def test_bad_messages_are_a_400_naming_the_place(messages, param):
    assert rejected(messages=messages).param == param


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tools_tool_calls_and_tool_results_round_trip_into_converse_blocks():
    request = translate(
        messages=[
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sun"}]},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    assert request["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather",
                    "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},
                    "description": "Weather in a city",
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    assert request["messages"][1] == {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "weather", "input": {"city": "Rome"}}},
        ],
    }
    # Both results in one user turn: Converse wants the roles to alternate.
    assert request["messages"][2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "rain"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "sun"}]}},
        ],
    }


def test_tool_choice_variants():
    messages = [{"role": "user", "content": "hi"}]
    named = translate(
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "weather"}},
    )
    assert named["toolConfig"]["toolChoice"] == {"tool": {"name": "weather"}}
    assert (
        "toolChoice"
        not in translate(messages=messages, tools=[WEATHER_TOOL], tool_choice="auto")["toolConfig"]
    )
    assert "toolConfig" not in translate(messages=messages, tools=[WEATHER_TOOL], tool_choice="none")
    assert rejected(messages=messages, tools=[WEATHER_TOOL], tool_choice="sometimes").param == "tool_choice"
    assert rejected(messages=messages, tools=[{"type": "web_search"}]).param == "tools[0]"


def test_tool_call_arguments_that_are_not_a_json_object_are_a_400():
    error = rejected(
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}],
            },
        ]
    )
    assert error.param == "messages[1].tool_calls[0].function.arguments"


# --- responses ------------------------------------------------------------------------------------


def converse_response(content, stop_reason="end_turn", usage=(12, 5)):
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
    }


def test_converse_response_becomes_a_chat_completion():
    completion = chat_completion([converse_response([{"text": "Hello"}, {"text": " there"}])], "bedrock/m")
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "bedrock/m"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert completion["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def test_tool_use_blocks_become_tool_calls():
    response = converse_response(
        [{"toolUse": {"toolUseId": "tu1", "name": "weather", "input": {"city": "Oslo"}}}], "tool_use"
    )
    choice = chat_completion([response], "bedrock/m")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "tu1" and call["type"] == "function"
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish_reason):
    completion = chat_completion([converse_response([{"text": "x"}], stop_reason)], "bedrock/m")
    assert completion["choices"][0]["finish_reason"] == finish_reason


def test_several_responses_are_several_choices_with_summed_usage():
    responses = [
        converse_response([{"text": "a"}], usage=(10, 1)),
        converse_response([{"text": "b"}], usage=(10, 2)),
    ]
    completion = chat_completion(responses, "bedrock/m")
    assert [c["message"]["content"] for c in completion["choices"]] == ["a", "b"]
    assert [c["index"] for c in completion["choices"]] == [0, 1]
    assert completion["usage"] == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}


# --- stream events ------------------------------------------------------------------------------


def test_stream_events_become_chunks_role_first_then_deltas_then_finish():
    writer = ChunkWriter("chatcmpl-1", "bedrock/m", 1700000000, include_usage=True)
    choice = ChoiceStream(writer, index=0)
    events = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Let me"}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": " check."}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tu1", "name": "weather"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ' "Oslo"}'}}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}}},
    ]
    chunks = [chunk for e in events for chunk in choice.chunks(e)]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" for c in chunks)
    assert all(c["usage"] is None for c in chunks)  # the usage chunk comes last, from the caller
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1:3] == [{"content": "Let me"}, {"content": " check."}]
    assert deltas[3] == {
        "tool_calls": [
            {"index": 0, "id": "tu1", "type": "function", "function": {"name": "weather", "arguments": ""}}
        ]
    }
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[3:6])
    assert json.loads(arguments) == {"city": "Oslo"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert choice.usage == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert writer.usage_chunk(choice.usage)["choices"] == []

"""The official ``anthropic`` SDK (pinned in requirements.txt) against ``/v1/messages`` on the real
sidecar, served by an OpenAI-compatible backend, by an Anthropic one and by the simulator; plain and
streamed, with a tool-use round trip (fixtures in conftest.py)."""

from __future__ import annotations

import anthropic
import pytest

from conftest import SIMULATOR_OUTPUT_TOKENS

OK_PIECES = ["Hello", " from", " the", " mock", " upstream."]
OK_CONTENT = "".join(OK_PIECES)
TOOL_NAME = "get_weather"
TOOL_ANSWER_PREFIX = "The weather in Paris: "
TOOLS = [
    {
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize("model", ["compat", "claude"])
def test_message_from_an_upstream_backend(anthropic_client, model):
    message = anthropic_client.messages.create(model=model, max_tokens=256, system="Be brief.", messages=MESSAGES)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text"
    assert message.content[0].text == OK_CONTENT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    # 12 prompt tokens of which 4 read from the cache (and, from Anthropic, 2 written to it).
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens + (
        message.usage.cache_creation_input_tokens or 0
    ) == 12


def test_message_from_the_simulator(anthropic_client):
    message = anthropic_client.messages.create(model="sim", max_tokens=256, messages=MESSAGES)

    assert message.content[0].type == "text"
    assert len(message.content[0].text.split(" ")) == SIMULATOR_OUTPUT_TOKENS
    assert message.usage.output_tokens == SIMULATOR_OUTPUT_TOKENS
    assert message.usage.input_tokens > 0


@pytest.mark.parametrize("model", ["compat", "claude", "sim"])
def test_streaming_with_the_sdk_helper(anthropic_client, model):
    with anthropic_client.messages.stream(model=model, max_tokens=256, messages=MESSAGES) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(pieces) == final.content[0].text
    if model == "sim":
        assert len(pieces) == SIMULATOR_OUTPUT_TOKENS
        assert final.usage.output_tokens == SIMULATOR_OUTPUT_TOKENS
    else:
        assert pieces == OK_PIECES
        assert final.usage.output_tokens == 5
    assert final.stop_reason == "end_turn"


def test_raw_stream_events_follow_anthropics_order(anthropic_client):
    events = list(anthropic_client.messages.create(model="compat", max_tokens=256, messages=MESSAGES, stream=True))

    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[-2].delta.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip_through_an_openai_compatible_backend(anthropic_client, stream):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    if stream:
        with anthropic_client.messages.stream(model="compat-tool", max_tokens=256, tools=TOOLS, messages=messages) as s:
            first = s.get_final_message()
    else:
        first = anthropic_client.messages.create(model="compat-tool", max_tokens=256, tools=TOOLS, messages=messages)

    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == TOOL_NAME
    assert tool_use.input == {"city": "Paris"}

    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18 C"}]},
    ]
    if stream:
        with anthropic_client.messages.stream(model="compat-tool", max_tokens=256, tools=TOOLS, messages=messages) as s:
            second = s.get_final_message()
    else:
        second = anthropic_client.messages.create(model="compat-tool", max_tokens=256, tools=TOOLS, messages=messages)

    assert second.stop_reason == "end_turn"
    assert second.content[0].text == TOOL_ANSWER_PREFIX + "18 C"


def test_tool_use_round_trip_through_an_anthropic_backend(anthropic_client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = anthropic_client.messages.create(model="claude-tool", max_tokens=256, tools=TOOLS, messages=messages)
    tool_use = next(b for b in first.content if b.type == "tool_use")

    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
    ]
    second = anthropic_client.messages.create(model="claude-tool", max_tokens=256, tools=TOOLS, messages=messages)

    assert second.content[0].text == TOOL_ANSWER_PREFIX + "sunny"


def test_unknown_model_raises_not_found(anthropic_client):
    with pytest.raises(anthropic.NotFoundError) as raised:
        anthropic_client.messages.create(model="nope", max_tokens=10, messages=MESSAGES)

    assert raised.value.status_code == 404
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "not_found_error"


def test_upstream_rate_limit_raises_rate_limit_error(anthropic_client):
    with pytest.raises(anthropic.RateLimitError) as raised:
        anthropic_client.messages.create(model="compat-429", max_tokens=10, messages=MESSAGES)

    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert raised.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize("model", ["compat-cut", "claude-cut"])
def test_upstream_failure_mid_stream_raises_in_the_sdk(anthropic_client, model):
    pieces = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        with anthropic_client.messages.stream(model=model, max_tokens=256, messages=MESSAGES) as stream:
            for text in stream.text_stream:
                pieces.append(text)

    assert raised.value.body["error"]["type"] == "api_error"
    assert pieces, "some text arrived before the failure"
    assert "".join(pieces) != OK_CONTENT

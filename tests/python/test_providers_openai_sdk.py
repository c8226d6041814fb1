"""The official ``openai`` SDK against the real sidecar, answered by an Anthropic backend and a Gemini
backend (in-test upstreams speaking each protocol; fixtures in conftest.py). A client must not be able
to tell which provider answered, except by ``x-sluice-backend`` and ``model``."""

from __future__ import annotations

import json

import openai
import pytest

# What the in-test upstreams answer (tests/support/upstream/: mod.rs, openai.rs, anthropic.rs, gemini.rs).
OK_PIECES = ["Hello", " from", " the", " mock", " upstream."]
OK_CONTENT = "".join(OK_PIECES)
TOOL_NAME = "get_weather"
TOOL_ANSWER_PREFIX = "The weather in Paris: "
# Usage: the Anthropic upstream reports 6 uncached + 4 cache-read + 2 cache-write input tokens,
# the Gemini upstream 12 prompt tokens of which 4 cached; both 5 output tokens.
USAGE = {"claude": (12, 4, 5), "gemini": (12, 4, 5)}

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]

BACKENDS = ["claude", "gemini"]


@pytest.mark.parametrize("model", BACKENDS)
def test_completion_looks_like_openai_whoever_answered(providers_client, model):
    raw = providers_client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    completion = raw.parse()

    assert raw.headers["x-sluice-backend"] == {"claude": "anthropic", "gemini": "gemini"}[model]
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == OK_CONTENT
    assert completion.choices[0].finish_reason == "stop"
    prompt, cached, output = USAGE[model]
    assert completion.usage.prompt_tokens == prompt
    assert completion.usage.completion_tokens == output
    assert completion.usage.total_tokens == prompt + output
    assert completion.usage.prompt_tokens_details.cached_tokens == cached


@pytest.mark.parametrize("model", BACKENDS)
def test_streamed_pieces_and_usage_arrive_as_openai_chunks(providers_client, model):
    chunks = list(
        providers_client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == OK_CONTENT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    prompt, cached, output = USAGE[model]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (prompt, output)
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("model", BACKENDS)
def test_stream_without_include_usage_has_no_usage_chunk(providers_client, model):
    chunks = list(providers_client.chat.completions.create(model=model, messages=MESSAGES, stream=True))

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("model", [f"{b}-tool" for b in BACKENDS])
def test_tool_call_round_trip(providers_client, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    first = providers_client.chat.completions.create(model=model, messages=messages, tools=TOOLS)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == TOOL_NAME
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    # The usual pattern: append the SDK's own message object, then the tool's result.
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    second = providers_client.chat.completions.create(model=model, messages=messages, tools=TOOLS)

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == TOOL_ANSWER_PREFIX + "18 C and sunny"


@pytest.mark.parametrize("model", [f"{b}-tool" for b in BACKENDS])
def test_streamed_tool_call_round_trip(providers_client, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    calls: dict[int, dict] = {}
    finish = None
    for chunk in providers_client.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": "", "extra": None})
            if delta.id:
                entry["id"] = delta.id
                entry["extra"] = (delta.model_extra or {}).get("extra_content")
            if delta.function and delta.function.name:
                entry["name"] = delta.function.name
            if delta.function and delta.function.arguments:
                entry["arguments"] += delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish

    assert finish == "tool_calls"
    assert list(calls) == [0]
    call = calls[0]
    assert call["name"] == TOOL_NAME
    assert json.loads(call["arguments"]) == {"city": "Paris"}

    tool_call = {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
    if call["extra"]:
        # Gemini's thought signature rides along as Google's OpenAI-compatible API carries it.
        tool_call["extra_content"] = call["extra"]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"},
    ]
    text = "".join(
        c.choices[0].delta.content or ""
        for c in providers_client.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True)
        if c.choices
    )

    assert text == TOOL_ANSWER_PREFIX + "rain"


def test_an_upstream_that_ignores_stream_still_streams_to_the_sdk(providers_client):
    # Some OpenAI-compatible servers answer `stream: true` with one JSON document.
    chunks = list(
        providers_client.chat.completions.create(
            model="compat-whole", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == OK_CONTENT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5


@pytest.mark.parametrize("model", ["claude-cut", "claude-error-event", "gemini-cut"])
def test_upstream_failure_mid_stream_raises_in_the_sdk(providers_client, model):
    pieces = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in providers_client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)

    assert raised.value.body["type"] == "upstream_error"
    assert pieces, "some content arrived before the failure"
    assert "".join(pieces) != OK_CONTENT, "the answer was cut, not completed"


def test_anthropic_rate_limit_raises_rate_limit_error(providers_client):
    with pytest.raises(openai.RateLimitError) as raised:
        providers_client.chat.completions.create(model="claude-429", messages=MESSAGES)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "2"


def test_gemini_blocked_prompt_raises_bad_request_content_filter(providers_client):
    with pytest.raises(openai.BadRequestError) as raised:
        providers_client.chat.completions.create(model="gemini-blocked", messages=MESSAGES)

    assert raised.value.code == "content_filter"


def test_embeddings_from_gemini_decode_in_the_sdk(providers_client):
    # Left unset, the SDK asks for base64 and decodes it.
    response = providers_client.embeddings.create(model="gemini", input=["hello world", "bye"])

    assert [d.index for d in response.data] == [0, 1]
    assert response.data[0].embedding == [0.125 * (j + 1) for j in range(8)]
    assert response.data[1].embedding == [1 + 0.125 * (j + 1) for j in range(8)]
    assert response.usage.prompt_tokens > 0


def test_embeddings_from_anthropic_are_a_clear_bad_request(providers_client):
    with pytest.raises(openai.BadRequestError) as raised:
        providers_client.embeddings.create(model="claude", input="hello")

    assert raised.value.code == "unsupported_for_backend"
    assert "embeddings" in raised.value.message

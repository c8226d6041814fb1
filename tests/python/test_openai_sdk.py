"""The official ``openai`` Python SDK against the real sidecar binary (fixtures in conftest.py)."""

from __future__ import annotations

import time

import openai
import pytest

from conftest import SECRET, SIMULATOR_DIMENSIONS, SIMULATOR_MODEL, SIMULATOR_OUTPUT_TOKENS, UPSTREAM_ROUTES

# What sluice-test-upstream answers (tests/support/upstream/mod.rs and openai.rs).
OK_PIECES = ["Hello", " from", " the", " mock", " upstream."]
OK_CONTENT = "".join(OK_PIECES)
PROMPT_TOKENS, COMPLETION_TOKENS, CACHED_TOKENS = 12, 5, 4
SLOW_CHUNK_INTERVAL_S = 0.050
BAD_REQUEST_MESSAGE = "Invalid value for 'temperature': expected a number between 0 and 2."

MESSAGES = [{"role": "user", "content": "Say hello"}]


def pauses(arrivals: list[float], at_least: float) -> int:
    """How many gaps between consecutive arrivals last ``at_least`` seconds."""
    return sum(1 for a, b in zip(arrivals, arrivals[1:]) if b - a >= at_least)


def test_chat_completion_returns_the_upstream_answer(client, upstream):
    completion = client.chat.completions.create(model="chat", messages=MESSAGES)

    assert completion.choices[0].message.content == OK_CONTENT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "mock-ok"
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert completion.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    assert completion.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    sent = upstream.requests()[-1]
    assert sent["body"]["model"] == "mock-ok"
    assert sent["body"]["messages"] == MESSAGES
    assert sent["headers"]["authorization"] == f"Bearer {SECRET}"


def test_chat_completion_from_the_simulator(client):
    completion = client.chat.completions.create(model=SIMULATOR_MODEL, messages=MESSAGES)

    assert isinstance(completion.choices[0].message.content, str)
    assert completion.choices[0].message.content
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.completion_tokens == SIMULATOR_OUTPUT_TOKENS
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + SIMULATOR_OUTPUT_TOKENS


def test_streamed_chunks_arrive_incrementally(client):
    arrivals, pieces = [], []
    stream = client.chat.completions.create(model="slow", messages=MESSAGES, stream=True)
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)

    assert pieces == OK_PIECES
    # The upstream pauses between chunks; a buffered answer would arrive in one burst.
    assert pauses(arrivals, SLOW_CHUNK_INTERVAL_S / 2) >= 2, arrivals


def test_simulator_streams_token_by_token(client):
    arrivals, text = [], ""
    stream = client.chat.completions.create(model=SIMULATOR_MODEL, messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content

    assert text
    assert len(arrivals) > 1
    # perToken is 30ms in the manifest.
    assert pauses(arrivals, 0.015) >= 2, arrivals


def test_stream_without_include_usage_has_no_usage(client):
    chunks = list(client.chat.completions.create(model="chat", messages=MESSAGES, stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == OK_CONTENT
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "no usage-only chunk when the client did not ask"


@pytest.mark.parametrize("model", ["chat", SIMULATOR_MODEL])
def test_stream_with_include_usage_ends_with_usage(client, model):
    chunks = list(
        client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    if model == "chat":
        assert last.usage.prompt_tokens == PROMPT_TOKENS
        assert last.usage.completion_tokens == COMPLETION_TOKENS
        assert last.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    else:
        assert last.usage.completion_tokens == SIMULATOR_OUTPUT_TOKENS
        assert last.usage.total_tokens == last.usage.prompt_tokens + SIMULATOR_OUTPUT_TOKENS


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_embeddings_from_the_upstream(client, upstream, encoding_format):
    # Left unset, the SDK asks for base64 and decodes it; the sidecar must pass that through.
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    response = client.embeddings.create(model="embed", input=["hello world", "bye"], **extra)

    assert [d.index for d in response.data] == [0, 1]
    assert response.data[0].embedding == [0.125 * (j + 1) for j in range(8)]
    assert response.data[1].embedding == [1 + 0.125 * (j + 1) for j in range(8)]
    assert response.usage.prompt_tokens == 3
    assert upstream.requests()[-1]["body"]["model"] == "mock-ok"


def test_embeddings_from_the_simulator(client):
    response = client.embeddings.create(model=SIMULATOR_MODEL, input=["hello world", "bye"], encoding_format="float")

    assert [d.index for d in response.data] == [0, 1]
    assert all(len(d.embedding) == SIMULATOR_DIMENSIONS for d in response.data)
    assert all(isinstance(x, float) for d in response.data for x in d.embedding)
    assert response.usage.prompt_tokens > 0


def test_models_list_names_every_route_model(client):
    models = client.models.list()

    assert {m.id for m in models} == {SIMULATOR_MODEL, *UPSTREAM_ROUTES}
    assert all(m.object == "model" for m in models)


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-nope", messages=MESSAGES)

    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"
    assert "gpt-nope" in raised.value.message
    for model in [SIMULATOR_MODEL, *UPSTREAM_ROUTES]:
        assert model in raised.value.message


def test_upstream_400_raises_bad_request_with_its_message(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="fails-400", messages=MESSAGES)

    assert raised.value.status_code == 400
    assert BAD_REQUEST_MESSAGE in raised.value.message
    assert raised.value.code == "invalid_value"
    assert raised.value.param == "temperature"


def test_body_over_the_limit_raises_413(client, upstream):
    before = len(upstream.requests())
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a" * (11 * 1024 * 1024)}])

    assert raised.value.status_code == 413
    assert raised.value.code == "request_too_large"
    assert len(upstream.requests()) == before
    assert client.chat.completions.create(model="chat", messages=MESSAGES).choices[0].message.content == OK_CONTENT


def test_the_key_never_reaches_the_logs(client, sidecar):
    client.chat.completions.create(model="chat", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fails-400", messages=MESSAGES)

    assert SECRET not in sidecar.log.read_text()

"""The official ``openai`` and ``anthropic`` SDKs through the real sidecar to an Amazon Bedrock backend
(``sluice-test-upstream --protocol bedrock``, which checks every request's SigV4 signature and answers in
Converse's format and binary event stream). Credentials come from a Secret holding an AWS credentials
file. A client must not be able to tell it is Bedrock, except by ``x-sluice-backend``."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import NAMESPACE, _upstream_process, running_sidecar

# What the Bedrock upstream accepts and answers (tests/support/upstream/bedrock.rs, bedrock/auth.rs, mod.rs).
ACCESS_KEY_ID = "AKIASLUICETEST000001"
SECRET_ACCESS_KEY = "sluice/Test+Secret/Key/0000000000000000001"
OK_PIECES = ["Hello", " from", " the", " mock", " upstream."]
OK_CONTENT = "".join(OK_PIECES)
TOOL_NAME = "get_weather"
TOOL_ANSWER_PREFIX = "The weather in Paris: "
# 6 uncached + 4 cache-read + 2 cache-write input tokens, 5 output tokens.
PROMPT_TOKENS, CACHED_TOKENS, CACHE_WRITE_TOKENS, COMPLETION_TOKENS = 12, 4, 2, 5

# Route name (its model alias) -> the Bedrock model id, which picks the upstream's behaviour.
ROUTES = {
    "bedrock": "mock-ok-v1:0",
    "bedrock-tool": "mock-tool",
    "bedrock-error-event": "mock-error-event",
}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def _manifest(base_url: str) -> str:
    credentials = f"[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
    docs = [
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: bedrock, namespace: {NAMESPACE}}}\n"
        f"stringData: {{credentials: {json.dumps(credentials)}}}\n"
    ]
    for name, model in ROUTES.items():
        docs.append(
            f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  models: [{name}]
  retry: {{attempts: 1}}
  backends:
  - name: bedrock
    provider: bedrock
    bedrock: {{region: us-east-1}}
    baseUrl: {base_url}
    model: "{model}"
    credentialsRef: {{name: bedrock, key: credentials}}
"""
        )
    return "---\n".join(docs)


@pytest.fixture(scope="module")
def bedrock_sidecar(tmp_path_factory):
    with _upstream_process("bedrock") as origin:
        manifests = tmp_path_factory.mktemp("bedrock-manifests")
        (manifests / "routes.yaml").write_text(_manifest(origin))
        with running_sidecar(manifests, tmp_path_factory.mktemp("bedrock-sidecar")) as running:
            yield running


@pytest.fixture
def client(bedrock_sidecar) -> openai.OpenAI:
    return openai.OpenAI(base_url=bedrock_sidecar.base_url, api_key="unused", max_retries=0, timeout=20.0)


@pytest.fixture
def claude(bedrock_sidecar) -> anthropic.Anthropic:
    root = bedrock_sidecar.base_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0, timeout=20.0)


def test_openai_completion_with_cache_tokens(client):
    raw = client.chat.completions.with_raw_response.create(model="bedrock", messages=MESSAGES)
    completion = raw.parse()

    assert raw.headers["x-sluice-backend"] == "bedrock"
    assert completion.choices[0].message.content == OK_CONTENT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert completion.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS


def test_openai_stream_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="bedrock", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == OK_CONTENT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_call_round_trip(client, stream):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        chunks = list(client.chat.completions.create(model="bedrock-tool", messages=messages, tools=OPENAI_TOOLS, stream=True))
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        call_id, name = calls[0].id, calls[0].function.name
        arguments = "".join(tc.function.arguments or "" for tc in calls)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes == ["tool_calls"]
    else:
        first = client.chat.completions.create(model="bedrock-tool", messages=messages, tools=OPENAI_TOOLS)
        assert first.choices[0].finish_reason == "tool_calls"
        call = first.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == TOOL_NAME
    assert json.loads(arguments) == {"city": "Paris"}

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]
    second = client.chat.completions.create(model="bedrock-tool", messages=messages, tools=OPENAI_TOOLS)
    assert second.choices[0].message.content == TOOL_ANSWER_PREFIX + "sunny"


def test_openai_stream_exception_mid_way_raises_in_the_sdk(client):
    stream = client.chat.completions.create(model="bedrock-error-event", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_anthropic_message_and_stream(claude):
    message = claude.messages.create(model="bedrock", max_tokens=256, messages=[{"role": "user", "content": "Say hello"}])
    assert message.content[0].text == OK_CONTENT
    assert message.stop_reason == "end_turn"
    assert message.usage.cache_read_input_tokens == CACHED_TOKENS

    with claude.messages.stream(model="bedrock", max_tokens=256, messages=[{"role": "user", "content": "Say hello"}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(pieces) == OK_CONTENT
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use_round_trip(claude, stream):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with claude.messages.stream(model="bedrock-tool", max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(model="bedrock-tool", max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == TOOL_NAME
    assert tool_use.input == {"city": "Paris"}

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
    ]
    second = claude.messages.create(model="bedrock-tool", max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)
    assert second.content[0].text == TOOL_ANSWER_PREFIX + "sunny"


def test_no_credential_in_the_sidecars_log(bedrock_sidecar, client):
    client.chat.completions.create(model="bedrock", messages=MESSAGES)
    assert SECRET_ACCESS_KEY not in bedrock_sidecar.log.read_text()

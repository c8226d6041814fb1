"""The official ``openai`` and ``anthropic`` SDKs through the real sidecar to Vertex AI backends:
Gemini (``publisher: google``) and Claude (``publisher: anthropic``) models at the in-test
Vertex upstream (``sluice-test-upstream --protocol vertex``, tests/support/upstream/vertex.rs),
plain, streamed and with a tool call. The Gemini routes get their tokens from the throwaway
service-account key (the upstream checks the JWT's signature); the Claude routes from the
metadata server, as a pod with workload identity does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import anthropic
import openai
import pytest

from conftest import NAMESPACE, Upstream, _upstream_process, running_sidecar

REPO = Path(__file__).resolve().parents[2]
KEY_FILE = REPO / "sidecar/src/providers/fixtures/vertex/throwaway_test_service_account_key.json"
PROJECT = "sluice-test-project"
REGION = "us-east5"
# Mirrors tests/support/upstream/mod.rs.
OK_CONTENT = "Hello from the mock upstream."
TOOL_NAME = "get_weather"
TOOL_PREAMBLE = "Let me check the weather."

# Route name (its model alias) -> (publisher, upstream model, identity).
ROUTES = {
    "vx-gemini": ("google", "mock-ok", "key"),
    "vx-gemini-tool": ("google", "mock-tool", "key"),
    "vx-claude": ("anthropic", "mock-ok", "metadata"),
    "vx-claude-tool": ("anthropic", "mock-tool", "metadata"),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def vertex_upstream():
    with _upstream_process("vertex") as origin:
        yield Upstream(base_url=origin, origin=origin)


@pytest.fixture(scope="module")
def vertex_sidecar(vertex_upstream, tmp_path_factory):
    key = json.loads(KEY_FILE.read_text())
    key["token_uri"] = f"{vertex_upstream.origin}/token"
    docs = [
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: vertex-key, namespace: {NAMESPACE}}}\n"
        f"stringData:\n  key.json: {json.dumps(json.dumps(key))}\n"
    ]
    for name, (publisher, model, identity) in ROUTES.items():
        credentials = "    credentialsRef: {name: vertex-key, key: key.json}\n" if identity == "key" else ""
        docs.append(
            f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  models: [{name}]
  retry: {{attempts: 1}}
  backends:
  - name: {name}
    provider: vertex
    baseUrl: {vertex_upstream.base_url}
    model: {model}
    vertex: {{project: {PROJECT}, region: {REGION}, publisher: {publisher}}}
{credentials}"""
        )
    manifests = tmp_path_factory.mktemp("vertex-manifests")
    (manifests / "routes.yaml").write_text("---\n".join(docs))
    # The sidecar finds the metadata server where GCE_METADATA_HOST says; the environment is
    # copied when the process starts, so the patch need not outlive the start.
    host = vertex_upstream.origin.removeprefix("http://")
    with mock.patch.dict(os.environ, {"GCE_METADATA_HOST": host}):
        context = running_sidecar(manifests, tmp_path_factory.mktemp("vertex-sidecar"))
        running = context.__enter__()
    try:
        yield running
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def client(vertex_sidecar) -> openai.OpenAI:
    return openai.OpenAI(base_url=vertex_sidecar.base_url, api_key="unused", max_retries=0, timeout=20.0)


@pytest.fixture
def claude_client(vertex_sidecar) -> anthropic.Anthropic:
    root = vertex_sidecar.base_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0, timeout=20.0)


def _model_calls(upstream: Upstream, publisher: str) -> list[dict]:
    prefix = f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/{publisher}/models/"
    return [r for r in upstream.requests() if r["path"].startswith(prefix)]


@pytest.mark.parametrize("model", ["vx-gemini", "vx-claude"])
def test_openai_sdk_gets_a_completion_from_each_vertex_publisher(client, model):
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hello"}])

    assert completion.choices[0].message.content == OK_CONTENT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 12


@pytest.mark.parametrize("model", ["vx-gemini", "vx-claude"])
def test_openai_sdk_streams_from_each_vertex_publisher(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == OK_CONTENT
    assert chunks[-1].usage.completion_tokens == 5


@pytest.mark.parametrize("model", ["vx-gemini-tool", "vx-claude-tool"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_gets_a_tool_call_from_each_vertex_publisher(client, model, stream):
    request = dict(model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    if stream:
        name, arguments = "", ""
        for chunk in client.chat.completions.create(stream=True, **request):
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                name += call.function.name or ""
                arguments += call.function.arguments or ""
    else:
        message = client.chat.completions.create(**request).choices[0].message
        name, arguments = message.tool_calls[0].function.name, message.tool_calls[0].function.arguments

    assert name == TOOL_NAME
    assert json.loads(arguments) == {"city": "Paris"}


def test_the_requests_carry_bearer_tokens_and_vertex_bodies(client, vertex_upstream):
    client.chat.completions.create(model="vx-claude", messages=[{"role": "user", "content": "Say hello"}])
    client.chat.completions.create(model="vx-gemini", messages=[{"role": "user", "content": "Say hello"}])

    claude = _model_calls(vertex_upstream, "anthropic")[-1]
    assert claude["path"].endswith("/mock-ok:rawPredict")
    assert claude["body"]["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in claude["body"]
    assert claude["headers"]["authorization"].startswith("Bearer ya29.metadata-mock-")
    gemini = _model_calls(vertex_upstream, "google")[-1]
    assert gemini["path"].endswith("/mock-ok:generateContent")
    assert gemini["headers"]["authorization"].startswith("Bearer ya29.c.vertex-mock-")


def test_anthropic_sdk_gets_a_message_and_a_stream_from_claude_on_vertex(claude_client):
    message = claude_client.messages.create(
        model="vx-claude", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert message.content[0].text == OK_CONTENT

    with claude_client.messages.stream(
        model="vx-claude", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == OK_CONTENT
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["vx-claude-tool", "vx-gemini-tool"])
def test_anthropic_sdk_streams_a_tool_use_from_each_vertex_publisher(claude_client, model):
    tool = {
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"],
    }
    with claude_client.messages.stream(
        model=model, max_tokens=64, tools=[tool], messages=[{"role": "user", "content": "Weather in Paris?"}]
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [(TOOL_NAME, {"city": "Paris"})]
    texts = [b.text for b in final.content if b.type == "text"]
    assert texts == [TOOL_PREAMBLE]

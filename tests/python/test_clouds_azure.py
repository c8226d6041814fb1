"""The official ``openai`` and ``anthropic`` SDKs through the real sidecar to Azure OpenAI backends (the
in-test upstream's Azure part, tests/support/upstream/azure.rs): a deployment and the v1 API, answers
whole and streamed, a tool call, and Azure's content-filter refusal as the SDKs raise it."""

from __future__ import annotations

import anthropic
import openai
import pytest
from conftest import NAMESPACE, Upstream, _upstream_process, running_sidecar

KEY = "azure-key-python-31d7"
OK_PIECES = ["Hello", " from", " the", " mock", " upstream."]
OK_CONTENT = "".join(OK_PIECES)
TOOL_NAME = "get_weather"
TOOL_ANSWER_PREFIX = "The weather in Paris: "
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

# Route name (its model alias) -> the deployment (whose name picks the upstream's behaviour), or
# None for the v1 API with the model `mock-ok` in the body.
ROUTES = {
    "azure": "mock-ok",
    "azure-tool": "mock-tool",
    "azure-refused": "mock-content-filter",
    "azure-v1": None,
}


@pytest.fixture(scope="module")
def azure_upstream():
    with _upstream_process("azure") as origin:
        yield Upstream(base_url=origin, origin=origin)


@pytest.fixture(scope="module")
def azure_sidecar(azure_upstream, tmp_path_factory):
    docs = [f"apiVersion: v1\nkind: Secret\nmetadata: {{name: azure, namespace: {NAMESPACE}}}\nstringData: {{apiKey: {KEY}}}\n"]
    for name, deployment in ROUTES.items():
        settings = (
            f'    azure: {{deployment: {deployment}, apiVersion: "2024-10-21"}}\n    model: gpt-4o\n'
            if deployment
            else "    model: mock-ok\n"
        )
        docs.append(
            f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  models: [{name}]
  retry: {{attempts: 1}}
  backends:
  - name: azure
    provider: azure-openai
    baseUrl: {azure_upstream.base_url}
    credentialsRef: {{name: azure, key: apiKey}}
{settings}"""
        )
    manifests = tmp_path_factory.mktemp("azure-manifests")
    (manifests / "routes.yaml").write_text("---\n".join(docs))
    with running_sidecar(manifests, tmp_path_factory.mktemp("azure-sidecar")) as running:
        yield running


@pytest.fixture
def azure_client(azure_sidecar) -> openai.OpenAI:
    return openai.OpenAI(base_url=azure_sidecar.base_url, api_key="unused", max_retries=0, timeout=20.0)


@pytest.fixture
def azure_anthropic(azure_sidecar) -> anthropic.Anthropic:
    root = azure_sidecar.base_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0, timeout=20.0)


@pytest.mark.parametrize("model", ["azure", "azure-v1"])
def test_openai_sdk_gets_the_answer_and_usage(azure_client, azure_upstream, model):
    raw = azure_client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    completion = raw.parse()

    assert raw.headers["x-sluice-backend"] == "azure"
    assert completion.choices[0].message.content == OK_CONTENT
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    sent = azure_upstream.requests()[-1]
    assert sent["headers"]["api-key"] == KEY
    expected = (
        "/openai/deployments/mock-ok/chat/completions?api-version=2024-10-21"
        if model == "azure"
        else "/openai/v1/chat/completions"
    )
    assert sent["path"] == expected


def test_openai_sdk_streams_past_azures_filter_chunk(azure_client):
    chunks = list(
        azure_client.chat.completions.create(
            model="azure", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == OK_CONTENT
    assert chunks[-1].usage.completion_tokens == 5
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_tool_call_round_trip(azure_client, stream):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        chunks = list(azure_client.chat.completions.create(model="azure-tool", messages=messages, tools=TOOLS, stream=True))
        deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        call_id = deltas[0].id
        name = deltas[0].function.name
        arguments = "".join(d.function.arguments or "" for d in deltas)
    else:
        first = azure_client.chat.completions.create(model="azure-tool", messages=messages, tools=TOOLS)
        call = first.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == TOOL_NAME
    assert arguments.replace(" ", "") == '{"city":"Paris"}'

    messages += [
        {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "18 C"},
    ]
    second = azure_client.chat.completions.create(model="azure-tool", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == TOOL_ANSWER_PREFIX + "18 C"


def test_openai_sdk_raises_azures_content_filter_refusal(azure_client):
    with pytest.raises(openai.BadRequestError) as raised:
        azure_client.chat.completions.create(model="azure-refused", messages=MESSAGES)

    assert raised.value.status_code == 400
    assert raised.value.code == "content_filter"
    assert raised.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_through_messages_to_an_azure_deployment(azure_anthropic, stream):
    if stream:
        with azure_anthropic.messages.stream(model="azure", max_tokens=64, messages=MESSAGES[1:]) as s:
            pieces = list(s.text_stream)
            message = s.get_final_message()
        assert "".join(pieces) == OK_CONTENT
    else:
        message = azure_anthropic.messages.create(model="azure", max_tokens=64, messages=MESSAGES[1:])
    assert message.content[0].text == OK_CONTENT
    assert message.stop_reason == "end_turn"


def test_anthropic_sdk_tool_use_through_an_azure_deployment(azure_anthropic):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    anthropic_tools = [{"name": TOOL_NAME, "description": "Current weather in a city", "input_schema": TOOLS[0]["function"]["parameters"]}]
    with azure_anthropic.messages.stream(model="azure-tool", max_tokens=256, tools=anthropic_tools, messages=messages) as s:
        first = s.get_final_message()

    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use"
    assert tool_use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
    ]
    second = azure_anthropic.messages.create(model="azure-tool", max_tokens=256, tools=anthropic_tools, messages=messages)
    assert second.content[0].text == TOOL_ANSWER_PREFIX + "sunny"

"""The official ``openai`` SDK's Responses API (``responses.create``, ``responses.stream``) against
the real sidecar, answered by Anthropic, Gemini, OpenAI-compatible backends and the simulator: the
SDK must parse every answer and event as it parses OpenAI's own (fixtures in conftest.py)."""

from __future__ import annotations

import json

import openai
import pytest

# What the in-test upstreams answer (tests/support/upstream/).
OK_CONTENT = "Hello from the mock upstream."
TOOL_NAME = "get_weather"
TOOL_ANSWER_PREFIX = "The weather in Paris: "
TOOLS = [
    {
        "type": "function",
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
ASK = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.mark.parametrize("model", ["claude", "gemini", "compat"])
def test_responses_create_answers_like_openai_whoever_answered(providers_client, model):
    raw = providers_client.responses.with_raw_response.create(
        model=model, instructions="Be brief.", input="Say hello", store=True
    )
    response = raw.parse()

    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == OK_CONTENT
    assert response.id.startswith("resp_")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens == 5
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert json.loads(raw.text)["store"] is False, "the answer says it was not stored"
    assert raw.headers["x-sluice-route"] == f"team-a/{model}"


def test_responses_create_on_the_simulator(providers_client):
    response = providers_client.responses.create(model="sim", input="Say hello")

    assert response.status == "completed"
    assert response.output_text


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_a_json_schema_format_and_a_reasoning_effort_are_accepted_and_echoed(providers_client, model):
    # Anthropic gets them as structured output and thinking, Gemini as responseJsonSchema and a
    # thinking budget (the wire tests check what is sent); the SDK reads the answer as OpenAI's.
    schema = {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": False,
    }
    response = providers_client.responses.create(
        model=model,
        input="Greet",
        max_output_tokens=3000,
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "greeting", "schema": schema, "strict": True}},
    )

    assert response.status == "completed"
    assert response.text.format.type == "json_schema"
    assert response.text.format.name == "greeting"
    assert response.reasoning.effort == "low"
    assert response.output_text == OK_CONTENT


@pytest.mark.parametrize("model", ["claude", "gemini", "compat"])
def test_responses_stream_gives_the_text_deltas_and_the_final_response(providers_client, model):
    with providers_client.responses.stream(model=model, input="Say hello") as stream:
        events = list(stream)
        final = stream.get_final_response()

    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == OK_CONTENT
    assert final.output_text == OK_CONTENT
    assert final.usage.output_tokens == 5


@pytest.mark.parametrize("model", ["claude-tool", "gemini-tool", "compat-tool"])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_call_round_trip_completes(providers_client, model, streamed):
    if streamed:
        with providers_client.responses.stream(model=model, input=[ASK], tools=TOOLS) as stream:
            kinds = {e.type for e in stream}
            first = stream.get_final_response()
        assert "response.function_call_arguments.delta" in kinds or "response.function_call_arguments.done" in kinds
    else:
        first = providers_client.responses.create(model=model, input=[ASK], tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == TOOL_NAME
    assert json.loads(call.arguments)["city"] == "Paris"

    second = providers_client.responses.create(
        model=model,
        input=[ASK, *first.output, {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=TOOLS,
    )

    assert second.output_text == TOOL_ANSWER_PREFIX + "sunny"


def test_a_stream_that_breaks_off_ends_with_response_failed(providers_client):
    events = list(providers_client.responses.create(model="claude-cut", input="Say hello", stream=True))

    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "server_error"


def test_previous_response_id_is_refused_naming_the_field(providers_client):
    with pytest.raises(openai.BadRequestError) as refused:
        providers_client.responses.create(model="claude", input="hi", previous_response_id="resp_1")

    assert refused.value.param == "previous_response_id"


def test_retrieving_a_response_says_nothing_is_stored(providers_client):
    with pytest.raises(openai.NotFoundError):
        providers_client.responses.retrieve("resp_1")

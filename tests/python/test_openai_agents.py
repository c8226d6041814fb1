"""The OpenAI Agents SDK (which speaks the Responses API) running an agent with one function tool
to completion through the real sidecar, on a route served by an Anthropic-format upstream: the
model asks for the tool, the SDK runs it and sends its output back, the model answers with it."""

from __future__ import annotations

import agents
import openai

TOOL_ANSWER_PREFIX = "The weather in Paris: "


def test_an_agent_with_one_function_tool_runs_to_completion_on_an_anthropic_route(providers_sidecar):
    client = openai.AsyncOpenAI(base_url=providers_sidecar.base_url, api_key="unused", max_retries=0, timeout=20.0)
    # Traces would go to OpenAI's own servers; this run has nowhere to send them.
    agents.set_tracing_disabled(True)
    asked = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather now in a city."""
        asked.append(city)
        return "sunny"

    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model="claude-tool", openai_client=client),
    )

    result = agents.Runner.run_sync(agent, "What is the weather in Paris?")

    assert asked == ["Paris"]
    assert result.final_output == TOOL_ANSWER_PREFIX + "sunny"

"""`/metrics` read with the Prometheus project's own text-format parser after a scripted
sequence of requests through the official OpenAI SDK."""

from __future__ import annotations

import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import running_sidecar

OUTPUT_TOKENS = 7  # each answer is cut at max_tokens=7 (the simulator would say more)
PRICE_PER_MTOK = "50.00"  # output price; input is free, so each answer costs 7 × $50 / 1M = $0.00035

MANIFEST = f"""apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: team, namespace: default}}
spec: {{limitUSD: "1.00", period: daily}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat, namespace: default}}
spec:
  models: [chat]
  budgetRef: {{name: team}}
  backends:
  - name: sim
    provider: simulator
    model: sim-1
    pricing: {{inputPerMTok: "0", outputPerMTok: "{PRICE_PER_MTOK}"}}
    simulator: {{timeToFirstToken: 5ms, perToken: 1ms, outputTokens: 100, seed: 3}}
"""


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    manifests = tmp_path_factory.mktemp("metrics-manifests")
    (manifests / "routes.yaml").write_text(MANIFEST)
    with running_sidecar(manifests, tmp_path_factory.mktemp("metrics-sidecar")) as sidecar:
        yield sidecar


def scrape(sidecar) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"{sidecar.admin_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    matching = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert matching, f"no sample {name} with {labels}"
    return sum(matching)


def test_metrics_count_requests_tokens_spend_and_budget_after_a_scripted_sequence(metered):
    client = openai.OpenAI(base_url=metered.base_url, api_key="unused", max_retries=0, timeout=20.0)
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(3):
        client.chat.completions.create(model="chat", messages=messages, max_tokens=OUTPUT_TOKENS)
    chunks = list(client.chat.completions.create(model="chat", messages=messages, max_tokens=OUTPUT_TOKENS, stream=True))
    assert chunks
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)

    samples = scrape(metered)
    route = {"route": "default/chat", "backend": "sim", "model": "sim-1", "outcome": "ok"}
    assert value(samples, "sluice_requests_total", **route) == 4
    assert value(samples, "sluice_tokens_total", route="default/chat", gen_ai_token_type="output") == 4 * OUTPUT_TOKENS
    assert value(samples, "sluice_spend_microdollars_total", **route) == 4 * 350
    assert value(samples, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat") == 4
    assert value(samples, "gen_ai_server_time_to_first_token_seconds_count", route="default/chat") == 1
    assert value(samples, "sluice_budget_spent_microdollars", budget="default/team") == 4 * 350
    assert value(samples, "sluice_budget_remaining_microdollars", budget="default/team") == 1_000_000 - 4 * 350
    assert value(samples, "sluice_budget_limit_microdollars", budget="default/team") == 1_000_000

"""The Codex CLI (``@openai/codex``, which speaks only the Responses API) in non-interactive mode,
``codex exec``, pointed at the real sidecar by its provider configuration: it finishes a one-step
task against a scripted upstream behind an Anthropic route and prints the model's answer.

The binary comes from ``$SLUICE_CODEX_BIN`` (tests/run installs the pinned package from npm into a
cache directory outside the repository and sets it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

OK_CONTENT = "Hello from the mock upstream."
# A bound on the run, never a target.
CODEX_WITHIN_S = 120


def _codex() -> Path:
    explicit = os.environ.get("SLUICE_CODEX_BIN")
    if not explicit or not Path(explicit).is_file():
        pytest.fail(
            "the Codex CLI was not found: set $SLUICE_CODEX_BIN to its `codex` (tests/run installs @openai/codex)",
            pytrace=False,
        )
    return Path(explicit)


def test_codex_exec_finishes_a_one_step_task_through_the_sidecar(providers_sidecar, tmp_path):
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""model = "claude"
model_provider = "sluice"

[model_providers.sluice]
name = "Sluice"
base_url = "{providers_sidecar.base_url}"
env_key = "SLUICE_CODEX_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update({"CODEX_HOME": str(home), "SLUICE_CODEX_KEY": "unused"})

    done = subprocess.run(
        [str(_codex()), "exec", "--skip-git-repo-check", "--sandbox", "read-only", "Say hello"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CODEX_WITHIN_S,
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert OK_CONTENT in done.stdout, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

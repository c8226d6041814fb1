"""Fixtures: the real sidecar binary in local mode, with one route over the built-in simulator
and routes over ``sluice-test-upstream`` (an OpenAI-compatible upstream whose behaviour the
backend's ``model`` chooses; see tests/support/upstream/).

Binaries come from ``$SLUICE_SIDECAR_BIN`` and ``$SLUICE_TEST_UPSTREAM_BIN``, else
``target/debug/`` of the repository (``$CARGO_TARGET_DIR`` if set). Nothing is built here:
run ``cargo build -p sluice-sidecar -p sluice-tests --bins`` first (the test command does).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "team-a"
SECRET = "sk-test-secret-123"
# A bound on start-up, never a target.
READY_WITHIN_S = 20.0

# Route name (also its model alias) -> the upstream behaviour its backend's model selects.
UPSTREAM_ROUTES = {
    "chat": "mock-ok",
    "embed": "mock-ok",
    "slow": "mock-slow-stream",
    "fails-400": "mock-400",
}
SIMULATOR_MODEL = "sim"
SIMULATOR_OUTPUT_TOKENS = 8
SIMULATOR_DIMENSIONS = 16


def _binary(env: str, name: str) -> Path:
    explicit = os.environ.get(env)
    if explicit:
        path = Path(explicit)
    else:
        target = os.environ.get("CARGO_TARGET_DIR")
        path = (REPO / target if target else REPO / "target") / "debug" / name
    if not path.is_file():
        pytest.fail(
            f"{path} not found: run `cargo build -p sluice-sidecar -p sluice-tests --bins` first, or set ${env}",
            pytrace=False,
        )
    return path


def _wait_for_addresses(process: subprocess.Popen, path: Path, output) -> dict[str, str]:
    """The addresses `process` reports in its `--address-file` `path` once its listeners are bound
    on port 0 (never a port probed free beforehand: anything on the machine could take it first).
    Fails with the tail of `output()` if it exits first or does not report within the bound."""
    deadline = time.monotonic() + READY_WITHIN_S
    while not path.exists():
        if process.poll() is not None:
            tail = "\n".join(output().splitlines()[-40:])
            pytest.fail(f"{process.args[0]} exited with {process.returncode} before it reported its addresses:\n{tail}", pytrace=False)
        if time.monotonic() > deadline:
            tail = "\n".join(output().splitlines()[-40:])
            pytest.fail(f"{process.args[0]} reported no addresses within {READY_WITHIN_S}s:\n{tail}", pytrace=False)
        time.sleep(0.02)
    # Written to a temporary file and renamed into place: once it exists, it is whole.
    return json.loads(path.read_text())


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Upstream:
    base_url: str
    origin: str

    def requests(self) -> list[dict]:
        """Every request the upstream received: method, path, headers (lower-case), JSON body."""
        with urllib.request.urlopen(f"{self.origin}/_requests", timeout=5) as response:
            return json.load(response)


@dataclass
class Sidecar:
    base_url: str
    admin_url: str
    log: Path


@pytest.fixture(scope="session")
def upstream():
    with _upstream_process("openai") as origin:
        yield Upstream(base_url=f"{origin}/v1", origin=origin)


def _manifest(upstream_base_url: str) -> str:
    docs = [
        f"""apiVersion: v1
kind: Secret
metadata: {{name: upstream, namespace: {NAMESPACE}}}
stringData: {{apiKey: {SECRET}}}
""",
        f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: simulated, namespace: {NAMESPACE}}}
spec:
  models: [{SIMULATOR_MODEL}]
  backends:
  - name: sim
    provider: simulator
    model: sim-1
    simulator:
      timeToFirstToken: 20ms
      perToken: 30ms
      outputTokens: {SIMULATOR_OUTPUT_TOKENS}
      seed: 7
      embeddingDimensions: {SIMULATOR_DIMENSIONS}
""",
    ]
    for name, model in UPSTREAM_ROUTES.items():
        docs.append(
            f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  models: [{name}]
  retry: {{attempts: 1}}
  backends:
  - name: mock
    provider: openai-compatible
    baseUrl: {upstream_base_url}
    model: {model}
    credentialsRef: {{name: upstream, key: apiKey}}
"""
        )
    return "---\n".join(docs)


@contextlib.contextmanager
def running_sidecar(manifests: Path, workdir: Path):
    """Runs the real sidecar on `manifests` until the block ends; its log and state stay in `workdir`."""
    binary = _binary("SLUICE_SIDECAR_BIN", "sluice-sidecar")
    log = workdir / "sidecar.log"
    address_file = workdir / "addresses.json"
    address_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                str(binary),
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--address-file",
                str(address_file),
                "--manifests",
                str(manifests),
                "--state-dir",
                str(workdir / "state"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        addresses = _wait_for_addresses(process, address_file, log.read_text)
        admin = f"http://{addresses['admin-listen']}"
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"sidecar exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{admin}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"sidecar not ready within {READY_WITHIN_S}s:\n{log.read_text()}", pytrace=False)
            time.sleep(0.025)
        yield Sidecar(base_url=f"http://{addresses['listen']}/v1", admin_url=admin, log=log)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def sidecar(upstream, tmp_path_factory):
    manifests = tmp_path_factory.mktemp("manifests")
    (manifests / "routes.yaml").write_text(_manifest(upstream.base_url))
    with running_sidecar(manifests, tmp_path_factory.mktemp("sidecar")) as running:
        yield running


@pytest.fixture
def client(sidecar) -> openai.OpenAI:
    return openai.OpenAI(base_url=sidecar.base_url, api_key="unused", max_retries=0, timeout=20.0)


# --- Anthropic and Gemini backends, and the Anthropic Messages API (tests/support/upstream/{anthropic,gemini}.rs)

# Route name (also its model alias) -> (provider, upstream model). Each provider's upstream is its own
# `sluice-test-upstream --protocol …` process; the openai-compatible routes use the `upstream` fixture.
PROVIDER_ROUTES = {
    "claude": ("anthropic", "mock-ok"),
    "claude-tool": ("anthropic", "mock-tool"),
    "claude-cut": ("anthropic", "mock-cut-stream"),
    "claude-error-event": ("anthropic", "mock-error-event"),
    "claude-429": ("anthropic", "mock-429"),
    "gemini": ("gemini", "mock-ok"),
    "gemini-tool": ("gemini", "mock-tool"),
    "gemini-cut": ("gemini", "mock-cut-stream"),
    "gemini-blocked": ("gemini", "mock-blocked"),
    "compat": ("openai-compatible", "mock-ok"),
    "compat-tool": ("openai-compatible", "mock-tool"),
    "compat-cut": ("openai-compatible", "mock-cut-stream"),
    "compat-429": ("openai-compatible", "mock-429"),
    "compat-whole": ("openai-compatible", "mock-whole"),
}
PROVIDERS_SIMULATOR_MODEL = "sim"


@contextlib.contextmanager
def _upstream_process(protocol: str):
    """Runs `sluice-test-upstream --protocol PROTOCOL`; yields its origin, `http://127.0.0.1:PORT`."""
    binary = _binary("SLUICE_TEST_UPSTREAM_BIN", "sluice-test-upstream")
    with tempfile.TemporaryDirectory(prefix="sluice-upstream-") as workdir:
        address_file = Path(workdir) / "addresses.json"
        output = Path(workdir) / "output.log"
        with output.open("w") as output_file:
            process = subprocess.Popen(
                [str(binary), "--listen", "127.0.0.1:0", "--address-file", str(address_file), "--protocol", protocol],
                stdout=output_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            addresses = _wait_for_addresses(process, address_file, output.read_text)
            yield f"http://{addresses['listen']}"
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def anthropic_upstream():
    """The in-test Anthropic upstream; its `base_url` is the API root Anthropic's SDK takes."""
    with _upstream_process("anthropic") as origin:
        yield Upstream(base_url=origin, origin=origin)


@pytest.fixture(scope="session")
def gemini_upstream():
    """The in-test Gemini upstream; its `base_url` is the API root Google's SDK takes."""
    with _upstream_process("gemini") as origin:
        yield Upstream(base_url=origin, origin=origin)


@pytest.fixture(scope="session")
def providers_sidecar(upstream, anthropic_upstream, gemini_upstream, tmp_path_factory):
    """A sidecar whose routes (PROVIDER_ROUTES) reach every provider, plus the simulator."""
    base_urls = {
        "anthropic": anthropic_upstream.base_url,
        "gemini": gemini_upstream.base_url,
        "openai-compatible": upstream.base_url,
    }
    docs = [
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: upstream, namespace: {NAMESPACE}}}\n"
        f"stringData: {{apiKey: {SECRET}}}\n",
        f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {PROVIDERS_SIMULATOR_MODEL}, namespace: {NAMESPACE}}}
spec:
  models: [{PROVIDERS_SIMULATOR_MODEL}]
  backends:
  - name: sim
    provider: simulator
    model: sim-1
    simulator: {{timeToFirstToken: 5ms, perToken: 5ms, outputTokens: {SIMULATOR_OUTPUT_TOKENS}, seed: 7}}
""",
    ]
    for name, (provider, model) in PROVIDER_ROUTES.items():
        docs.append(
            f"""apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  models: [{name}]
  retry: {{attempts: 1}}
  backends:
  - name: {provider}
    provider: {provider}
    baseUrl: {base_urls[provider]}
    model: {model}
    credentialsRef: {{name: upstream, key: apiKey}}
"""
        )
    manifests = tmp_path_factory.mktemp("provider-manifests")
    (manifests / "routes.yaml").write_text("---\n".join(docs))
    with running_sidecar(manifests, tmp_path_factory.mktemp("providers-sidecar")) as running:
        yield running


@pytest.fixture
def providers_client(providers_sidecar) -> openai.OpenAI:
    """The openai SDK pointed at the providers sidecar."""
    return openai.OpenAI(base_url=providers_sidecar.base_url, api_key="unused", max_retries=0, timeout=20.0)


@pytest.fixture
def anthropic_client(providers_sidecar):
    """The official anthropic SDK pointed at the providers sidecar (its root: the SDK adds /v1/messages)."""
    import anthropic

    root = providers_sidecar.base_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0, timeout=20.0)

"""Every manifest the Helm chart renders, for each value set, validated strictly against the
Kubernetes schemas of the lowest and the highest version the chart supports (the schemas that
`kubernetes-validate` ships; the API server of tests/cluster covers its own version live, in
tests/e2e/chart.rs). Kinds from other projects' CRDs (cert-manager, Prometheus Operator) have no
schema here; chart.rs validates them against stand-in CRDs on the real API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sluice"
LOWEST, HIGHEST = "1.27.0", "1.34.0"
FOREIGN_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")

VALUE_SETS = {
    "default": [],
    "plain-container": ["sidecar.mode=plain", "webhook.failurePolicy=Ignore", "webhook.podOptIn=false"],
    "cert-manager": ["certificates.certManager.enabled=true"],
    "cert-manager-cluster-issuer": [
        "certificates.certManager.enabled=true",
        "certificates.certManager.issuerRef.name=corp-ca",
        "certificates.certManager.issuerRef.kind=ClusterIssuer",
    ],
    "monitoring": [
        "metrics.serviceMonitor.enabled=true",
        "metrics.podMonitor.enabled=true",
        "metrics.dashboard.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "otel.endpoint=http://otel-collector.observability:4317",
    ],
}


def helm() -> Path:
    bin_dir = os.environ.get("SLUICE_CLUSTER_BIN")
    if not bin_dir:
        out = subprocess.run([str(REPO / "tests/cluster/build"), "--print-bin-dir"], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.fail("helm is not built: run tests/cluster/build (tests/run does)", pytrace=False)
        bin_dir = out.stdout.strip().splitlines()[-1]
    return Path(bin_dir) / "helm"


@pytest.mark.parametrize("version", [LOWEST, HIGHEST])
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rendered_chart_passes_strict_schema_validation(value_set, version, tmp_path):
    args = [str(helm()), "template", "sluice", str(CHART), "--namespace", "sluice-system", "--kube-version", version]
    for value in VALUE_SETS[value_set]:
        args += ["--set", value]
    rendered = subprocess.run(args, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(rendered.stdout)
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    ours = [d for d in documents if not d["apiVersion"].startswith(FOREIGN_GROUPS)]
    assert ours, "the chart rendered nothing"

    validated = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(manifest)],
        capture_output=True,
        text=True,
    )
    report = validated.stdout + validated.stderr
    assert validated.returncode == 0, report
    passed = [line for line in report.splitlines() if " passed for resource " in line]
    assert len(passed) == len(ours), f"{len(ours)} resources, {len(passed)} passed:\n{report}"

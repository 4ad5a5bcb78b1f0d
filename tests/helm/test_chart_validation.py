"""Both charts, rendered by Helm's own library for the defaults and several combinations
of values, lint cleanly, validate strictly against the Kubernetes 1.32 schemas, and
pass checkov with no failed check (each skip carries its reason in the chart)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.helm.test_chart_extensions import BANK_VALUES, PORTAL_S3_VALUES, PORTAL_VALUES
from tests.helm.test_chart_serve import SERVE_VALUES
from tests.helm.test_chart_train_workers import TRAIN_VALUES
from tests.helm.test_chart_uploads import UPLOADS_VALUES
from tests.helm.test_charts import BANK_NODE, PORTAL, render

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.32"
DIGEST = "sha256:" + "0123456789abcdef" * 4

COMBINATIONS: dict[str, tuple[Path, dict[str, Any] | None]] = {
    "portal-defaults": (PORTAL, None),
    "portal-monitoring-ingress": (
        PORTAL,
        {
            "metrics": {
                "token": {"existingSecret": "portal-metrics"},
                "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
                "grafanaDashboard": {"enabled": True},
            },
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "300m"},
                "tls": [{"secretName": "portal-tls", "hosts": ["portal.consortium.example"]}],
            },
        },
    ),
    "portal-pinned-env-secrets": (
        PORTAL,
        {
            "image": {"digest": DIGEST, "pullPolicy": "Always"},
            "secrets": {"mountAsFiles": False},
            "blobStorage": {"existingClaim": "shared-blobs"},
        },
    ),
    "portal-minimal": (
        PORTAL,
        {
            "web": {"replicaCount": 1},
            "scheduler": {"enabled": False},
            "migrations": {"enabled": False},
            "networkPolicy": {"enabled": False},
            "metrics": {"scrapeFrom": []},
        },
    ),
    "bank-defaults": (BANK_NODE, None),
    "bank-monitoring-pinned": (
        BANK_NODE,
        {
            "image": {"digest": DIGEST, "pullPolicy": "Always"},
            "metrics": {
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "grafanaDashboard": {"enabled": True},
            },
        },
    ),
    "bank-paused-closed": (
        BANK_NODE,
        {
            "replicaCount": 0,
            "networkPolicy": {"enabled": False},
            "metrics": {"service": False, "scrapeFrom": []},
        },
    ),
    "bank-probes-off": (BANK_NODE, {"metrics": {"livenessProbe": False, "readinessProbe": False}}),
    # A bank behind an egress proxy with a private CA, a client certificate and extras.
    "bank-proxy-ca-mtls-extras": (BANK_NODE, BANK_VALUES),
    # The scoring service beside the node, with the bank's callers allowed in.
    "bank-serve": (BANK_NODE, SERVE_VALUES),
    # Two more training machines: the workers' StatefulSet, Services and NetworkPolicy.
    "bank-train-workers": (BANK_NODE, TRAIN_VALUES),
    # Retention CronJob, proxy, CA bundle, extras; one scheduler.
    "portal-retention-proxy-ca-extras": (
        PORTAL,
        {**PORTAL_VALUES, "scheduler": {"replicaCount": 1}},
    ),
    # Ciphertexts in an S3-compatible bucket: staging emptyDirs, no claim.
    "portal-s3-retention": (PORTAL, PORTAL_S3_VALUES),
    # The uploads pool beside the web pods, the Ingress sending it the bulk paths.
    "portal-uploads-ingress": (PORTAL, UPLOADS_VALUES),
}
PINNED = {"portal-pinned-env-secrets", "bank-monitoring-pinned"}
# Each a deliberate choice, explained in the chart's checkov.io/skip annotations.
ALLOWED_SKIPS = {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_8", "CKV_K8S_9"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def documents(chart: Path, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [obj for docs in render(chart, copy.deepcopy(values)).values() for obj in docs]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each combination's manifests in a file of its own, as `helm template` prints them."""
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, (chart, values) in COMBINATIONS.items():
        files[name] = out / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump_all(documents(chart, values), sort_keys=False))
    return files


@pytest.mark.parametrize("name", COMBINATIONS)
def test_each_combination_lints_strictly(name):
    chart, values = COMBINATIONS[name]
    report = helm.lint(chart, copy.deepcopy(values), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_combinations_render_the_optional_kinds():
    kinds = {name: {o["kind"] for o in documents(*combo)} for name, combo in COMBINATIONS.items()}
    assert {"ServiceMonitor", "PrometheusRule", "Ingress"} <= kinds["portal-monitoring-ingress"]
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds["bank-monitoring-pinned"]
    assert "Deployment" in kinds["portal-minimal"] and "Job" not in kinds["portal-minimal"]
    assert kinds["bank-paused-closed"] == {"Deployment", "ConfigMap"}
    assert "CronJob" in kinds["portal-retention-proxy-ca-extras"]
    assert {"PodDisruptionBudget", "Service", "NetworkPolicy"} <= kinds["bank-serve"]
    assert "StatefulSet" in kinds["bank-train-workers"]
    uploads = [o for o in documents(*COMBINATIONS["portal-uploads-ingress"])
               if o["metadata"]["name"].endswith("-uploads")]  # fmt: skip
    assert sorted(o["kind"] for o in uploads) == ["Deployment", "PodDisruptionBudget", "Service"]


def _kubernetes_validate() -> str:
    # The dev extras install it beside this interpreter, whether or not PATH has it.
    beside = Path(sys.executable).parent / "kubernetes-validate"
    found = str(beside) if beside.exists() else shutil.which("kubernetes-validate")
    assert found, "kubernetes-validate is a dev dependency: pip install -e '.[dev]'"
    return found


def test_every_rendered_manifest_validates_strictly_against_kubernetes_1_32(rendered):
    result = subprocess.run(
        [
            _kubernetes_validate(),
            "--strict",
            "-k",
            KUBERNETES_VERSION,
            *map(str, rendered.values()),
        ],
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = output.count("passed for resource")
    expected = sum(
        1
        for combo in COMBINATIONS.values()
        for obj in documents(*combo)
        if obj["kind"] not in CRD_KINDS
    )
    assert passed == expected, output
    # Only the Prometheus Operator's custom resources lack a schema there (they are
    # checked in test_chart_monitoring.py and by promtool instead).
    for line in output.splitlines():
        if line.startswith("WARN"):
            assert any(f"kind {kind} " in line for kind in CRD_KINDS), line


def test_kubernetes_validate_strict_does_reject_an_unknown_field(tmp_path):
    (deployment,) = [o for o in documents(BANK_NODE, None) if o["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = subprocess.run(
        [_kubernetes_validate(), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "livenessProbes" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def checkov() -> str:
    """checkov lives in its own virtualenv (`make checkov-venv`): its pins clash with ours."""
    found = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if Path(found).exists():
        return found
    if os.environ.get("CI"):
        pytest.fail(f"checkov missing at {found}; `make test` creates it (make checkov-venv)")
    pytest.skip(f"checkov missing at {found}: run `make checkov-venv`")


@pytest.fixture(scope="module")
def checkov_report(checkov: str, rendered: dict[str, Path]) -> dict[str, Any]:
    args = [checkov, "--framework", "kubernetes", "--skip-download", "--compact", "-o", "json"]
    for path in rendered.values():
        args += ["-f", str(path)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check_in_any_combination(checkov_report):
    summary = checkov_report["summary"]
    failed = [
        (c["check_id"], c["check_name"], c["resource"], Path(c["file_path"]).name)
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert failed == []
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 300
    files = {Path(c["file_path"]).stem for c in checkov_report["results"]["passed_checks"]}
    assert files == set(COMBINATIONS)  # every combination was really scanned


def test_every_checkov_skip_is_a_known_choice_with_its_reason(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped  # the defaults skip digest pinning and pull policy, with reasons
    for check in skipped:
        assert check["check_id"] in ALLOWED_SKIPS, check["check_id"]
        assert len(check["check_result"].get("suppress_comment", "")) > 30, check["check_id"]


def test_pinning_a_digest_and_pulling_always_leaves_nothing_to_skip(checkov_report):
    skipped = {
        (Path(c["file_path"]).stem, c["check_id"])
        for c in checkov_report["results"]["skipped_checks"]
    }
    assert {(name, check) for name, check in skipped if name in PINNED} <= {
        ("portal-pinned-env-secrets", "CKV_K8S_35")  # env secrets were asked for there
    }

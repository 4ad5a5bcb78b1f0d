"""The Helm charts render, lint and keep their security promises (Helm's own library, offline)."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

HELM_DIR = Path(__file__).resolve().parents[2] / "helm"
PORTAL = HELM_DIR / "consortium-portal"
BANK_NODE = HELM_DIR / "bank-node"
CHARTS = [PORTAL, BANK_NODE]

# Kinds with the default values; ServiceMonitor, PrometheusRule and Ingress are opt-in.
EXPECTED_KINDS = {
    PORTAL: {
        "ConfigMap",
        "Deployment",
        "Job",
        "Service",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "NetworkPolicy",
    },
    BANK_NODE: {"Deployment", "ConfigMap", "Service", "NetworkPolicy"},
}


def render(chart: Path, values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Render ``chart`` like `helm template`; map each template file to its objects."""
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name="rel", namespace="consortium")
    rendered = {}
    for path, text in manifests.items():
        if path.endswith(".yaml"):
            rendered[Path(path).name] = [doc for doc in yaml.safe_load_all(text) if doc]
    return rendered


def objects(chart: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [obj for docs in render(chart, values).values() for obj in docs]


def the(objs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
    return found[0]


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objs:
        if obj["kind"] in {"Deployment", "Job", "StatefulSet"}:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def env_of(
    container: dict[str, Any], objs: list[dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The container's environment by name; with ``objs``, its ConfigMaps' (envFrom) too."""
    merged: dict[str, dict[str, Any]] = {}
    configmaps = [o for o in objs or () if o["kind"] == "ConfigMap"]
    for source in container.get("envFrom", []) if objs is not None else []:
        name = source["configMapRef"]["name"]
        (data,) = [o["data"] for o in configmaps if o["metadata"]["name"] == name]
        merged.update({key: {"name": key, "value": value} for key, value in data.items()})
    return merged | {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_default_values_lint_without_errors_or_warnings(chart: Path) -> None:
    report = helm.lint(chart, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == []


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_default_values_render_valid_yaml_with_the_expected_kinds(chart: Path) -> None:
    objs = objects(chart)
    assert {o["kind"] for o in objs} == EXPECTED_KINDS[chart]
    for obj in objs:
        assert obj["apiVersion"] and obj["metadata"]["name"].startswith("rel-")
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
        assert obj["metadata"]["namespace"] == "consortium"


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_template_files_are_named_after_the_kind_they_render(chart: Path) -> None:
    for filename, docs in render(chart).items():
        for obj in docs:
            assert filename.startswith(obj["kind"].lower() + "-"), filename


def undocumented_keys(values_yaml: str) -> list[str]:
    """Keys of values.yaml with no comment right above them.

    A `# -- text` comment documents a whole value (helm-docs' convention), so the
    keys and items nested under it are its content; a section's plain comment
    does not cover its children, which need their own.
    """
    undocumented = []
    previous = ""
    content_indent: int | None = None  # inside a documented value deeper than this
    for number, line in enumerate(values_yaml.splitlines(), 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped or stripped.startswith("#"):
            previous = stripped or previous
            continue
        if content_indent is not None and indent > content_indent:
            continue
        content_indent = None
        if stripped.startswith("- "):
            content_indent = indent
        elif re.match(r"^[A-Za-z0-9_.-]+:", stripped):
            if not previous.startswith("#"):
                undocumented.append(f"line {number}: {stripped}")
            if previous.startswith("# --"):
                content_indent = indent
        previous = stripped
    return undocumented


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_every_value_is_documented_with_a_comment(chart: Path) -> None:
    assert undocumented_keys((chart / "values.yaml").read_text()) == []


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_every_container_runs_as_non_root_on_a_read_only_root_filesystem(chart: Path) -> None:
    specs = dict(pod_specs(objects(chart)))
    assert specs
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], name
            assert container["resources"]["limits"] and container["resources"]["requests"]


def test_portal_web_serves_gunicorn_on_8000_with_health_and_readiness_probes() -> None:
    web = the(objects(PORTAL), "Deployment", "-web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["gunicorn"] and container["args"][0] == "consortium.wsgi"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Django rejects unknown Host headers, so the probes' one must be allowed.
    probe_host = container["readinessProbe"]["httpGet"]["httpHeaders"][0]["value"]
    assert probe_host in env_of(container)["DJANGO_ALLOWED_HOSTS"]["value"].split(",")


def test_portal_service_targets_the_web_pods_only() -> None:
    objs = objects(PORTAL)
    service = the(objs, "Service", "-portal")
    web = the(objs, "Deployment", "-web")
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_scheduler_runs_two_rolling_replicas_of_run_scheduler_by_default() -> None:
    # Several schedulers are safe (docs/guarantees.md, tests/faults/test_replicas.py), so
    # the chart runs two and lets a rolling update overlap them.
    objs = objects(PORTAL)
    scheduler = the(objs, "Deployment", "-scheduler")
    assert scheduler["spec"]["replicas"] == 2
    assert scheduler["spec"]["strategy"]["type"] == "RollingUpdate"
    assert scheduler["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "manage.py", "run_scheduler"]
    budget = the(objs, "PodDisruptionBudget", "-scheduler")
    pod_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "scheduler"


def test_a_single_scheduler_gets_no_disruption_budget_that_would_block_a_drain() -> None:
    objs = objects(PORTAL, {"scheduler": {"replicaCount": 1}})
    assert the(objs, "Deployment", "-scheduler")["spec"]["replicas"] == 1
    assert not [
        o
        for o in objs
        if o["metadata"]["name"].endswith("-scheduler") and o["kind"] == "PodDisruptionBudget"
    ]


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_job() -> None:
    job = the(objects(PORTAL), "Job", "-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_web_and_scheduler_share_the_blob_volume_at_consortium_blob_dir() -> None:
    objs = objects(PORTAL, {"blobStorage": {"mountPath": "/srv/blobs"}})
    claim = the(objs, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for suffix in ("-web", "-scheduler"):
        spec = the(objs, "Deployment", suffix)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert env_of(container, objs)["CONSORTIUM_BLOB_DIR"]["value"] == "/srv/blobs"
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/srv/blobs")
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_an_existing_blob_claim_is_used_instead_of_creating_one() -> None:
    objs = objects(PORTAL, {"blobStorage": {"existingClaim": "shared-blobs"}})
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    spec = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["shared-blobs"]


SECRET_CASES = [
    (PORTAL, None),
    (PORTAL, {"secrets": {"mountAsFiles": False}}),
    (BANK_NODE, None),
]


@pytest.mark.parametrize(("chart", "values"), SECRET_CASES, ids=["portal", "portal-env", "bank"])
def test_no_secret_object_and_no_inline_secret_value_is_rendered(
    chart: Path, values: dict[str, Any] | None
) -> None:
    objs = objects(chart, values)
    assert not [o for o in objs if o["kind"] == "Secret"]
    secret_names = {"DATABASE_URL", "DJANGO_SECRET_KEY"}
    for name, spec in pod_specs(objs):
        for container in spec["containers"]:
            for var in container.get("env", []):
                assert not (var["name"] in secret_names and "value" in var), (name, var["name"])


def test_portal_env_can_take_the_database_url_and_secret_key_from_the_named_secret() -> None:
    objs = objects(
        PORTAL, {"secrets": {"existingSecret": "prod-portal-env", "mountAsFiles": False}}
    )
    for name, spec in pod_specs(objs):
        env = env_of(spec["containers"][0])
        for var in ("DATABASE_URL", "DJANGO_SECRET_KEY"):
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "prod-portal-env", "key": var}, name


def test_portal_reads_the_named_secret_as_files_by_default() -> None:
    objs = objects(PORTAL, {"secrets": {"existingSecret": "prod-portal-env"}})
    for name, spec in pod_specs(objs):
        (container,) = spec["containers"]
        env = env_of(container, objs)
        assert "DATABASE_URL" not in env and "DJANGO_SECRET_KEY" not in env
        volume = next(
            v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "prod-portal-env"
        )
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert mount["readOnly"] is True
        assert env["DATABASE_URL_FILE"]["value"] == f"{mount['mountPath']}/DATABASE_URL"
        assert env["DJANGO_SECRET_KEY_FILE"]["value"] == f"{mount['mountPath']}/DJANGO_SECRET_KEY"


def test_portal_network_policy_denies_by_default_and_allows_dns_and_the_database() -> None:
    policy = the(objects(PORTAL, {"networkPolicy": {"databasePort": 6432}}), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    from_ingress, from_prometheus = spec["ingress"]
    assert from_ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert [p["port"] for p in from_ingress["ports"]] == [8000]
    assert from_prometheus["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert [p["port"] for p in from_prometheus["ports"]] == [8000, 9101]
    egress_ports = sorted((p["port"], p["protocol"]) for r in spec["egress"] for p in r["ports"])
    assert egress_ports == [(53, "TCP"), (53, "UDP"), (6432, "TCP")]
    assert all(rule.get("to") for rule in spec["egress"])


BANK_SECRETS = {
    "ckksContext": {"existingSecret": "alpha-ckks"},
    "signingKey": {"existingSecret": "alpha-signing"},
    "apiCredential": {"existingSecret": "alpha-api"},
}


def test_bank_node_runs_the_agent_with_its_config_file() -> None:
    deployment = the(objects(BANK_NODE), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"] + container["args"]
    assert command == ["bank-node", "run", "--config", "/etc/bank-node/config.toml"]
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]


def test_bank_node_mounts_each_key_from_its_named_secret_read_only() -> None:
    objs = objects(BANK_NODE, {"secrets": BANK_SECRETS, "data": {"existingClaim": "alpha-data"}})
    spec = the(objs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    sources = [
        s["secret"]["name"]
        for v in volumes.values()
        for s in v.get("projected", {}).get("sources", [])
    ]
    assert sorted(sources) == ["alpha-api", "alpha-ckks", "alpha-signing"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    keys = next(name for name, v in volumes.items() if "projected" in v)
    assert mounts[keys]["readOnly"] is True
    data = next(v for v in volumes.values() if "persistentVolumeClaim" in v)
    assert data["persistentVolumeClaim"]["claimName"] == "alpha-data"


def test_bank_node_config_toml_is_accepted_by_the_node_config_loader(tmp_path: Path) -> None:
    from bank_node.config import load_config

    values = {"bank": {"id": "bank_beta"}, "portal": {"url": "https://portal.test"}}
    configmap = the(objects(BANK_NODE, values), "ConfigMap")
    text = configmap["data"]["config.toml"]
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.bank == "bank_beta" and config.portal_url == "https://portal.test"
    assert config.metrics_port == 9100
    secret_paths = [config.credential_file, config.signing_key_file, config.secret_context_file]
    assert all(str(p).startswith("/run/secrets/bank-node/") for p in secret_paths)
    assert tomllib.loads(text)["data_file"] == "/var/lib/bank-node/transactions.csv"
    assert config.encrypt_workers == 2


def test_a_one_core_node_can_encrypt_in_its_own_process_and_a_negative_count_is_refused(
    tmp_path: Path,
) -> None:
    from bank_node.config import load_config

    values = {"config": {"encryptWorkers": 0}}
    path = tmp_path / "config.toml"
    path.write_text(the(objects(BANK_NODE, values), "ConfigMap")["data"]["config.toml"])
    assert load_config(path).encrypt_workers == 0
    with pytest.raises(helm.HelmValuesError, match="encryptWorkers"):
        objects(BANK_NODE, {"config": {"encryptWorkers": -1}})


def test_bank_node_egress_allows_only_the_configured_portal_and_dns() -> None:
    values = {"portal": {"cidrs": ["198.51.100.7/32", "198.51.100.8/32"], "port": 8443}}
    spec = the(objects(BANK_NODE, values), "NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    portal_rule, dns_rule = spec["egress"]
    assert portal_rule["to"] == [
        {"ipBlock": {"cidr": "198.51.100.7/32"}},
        {"ipBlock": {"cidr": "198.51.100.8/32"}},
    ]
    assert portal_rule["ports"] == [{"port": 8443, "protocol": "TCP"}]
    assert dns_rule["to"] and all("ipBlock" not in peer for peer in dns_rule["to"])
    assert sorted(p["protocol"] for p in dns_rule["ports"]) == ["TCP", "UDP"]
    assert {p["port"] for p in dns_rule["ports"]} == {53}


def test_bank_node_accepts_connections_only_on_the_metrics_port() -> None:
    spec = the(objects(BANK_NODE), "NetworkPolicy")["spec"]
    assert [p["port"] for rule in spec["ingress"] for p in rule["ports"]] == [9100]
    closed = the(objects(BANK_NODE, {"metrics": {"scrapeFrom": []}}), "NetworkPolicy")
    assert closed["spec"]["ingress"] == []


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_images_are_registry_repository_tag_and_a_digest_pins_them(chart: Path) -> None:
    image = {"registry": "reg.internal:5000", "repository": "team/app", "tag": "1.2.3"}
    for _, spec in pod_specs(objects(chart, {"image": image})):
        assert spec["containers"][0]["image"] == "reg.internal:5000/team/app:1.2.3"
    digest = "sha256:" + "ab" * 32
    for _, spec in pod_specs(objects(chart, {"image": {**image, "digest": digest}})):
        assert spec["containers"][0]["image"] == f"reg.internal:5000/team/app@{digest}"


BAD_VALUES = [
    (PORTAL, {"web": {"replicaCount": -1}}, "/web/replicaCount"),
    (PORTAL, {"web": {"replicaCount": "2"}}, "/web/replicaCount"),
    (PORTAL, {"secrets": {"existingSecret": None}}, "existingSecret"),
    (PORTAL, {"secrets": {"existingSecret": ""}}, "/secrets/existingSecret"),
    (PORTAL, {"secrets": {"existingSecret": "Not_A_Name"}}, "/secrets/existingSecret"),
    (PORTAL, {"image": {"tag": "has space"}}, "/image/tag"),
    (PORTAL, {"networkPolicy": {"databaseTo": []}}, "/networkPolicy/databaseTo"),
    (PORTAL, {"replicaCount": 3}, "replicaCount"),
    (BANK_NODE, {"replicaCount": -1}, "/replicaCount"),
    (BANK_NODE, {"replicaCount": 2}, "/replicaCount"),
    (BANK_NODE, {"secrets": {"signingKey": {"existingSecret": None}}}, "existingSecret"),
    (BANK_NODE, {"data": {"existingClaim": ""}}, "/data/existingClaim"),
    (BANK_NODE, {"portal": {"cidrs": []}}, "/portal/cidrs"),
    (BANK_NODE, {"portal": {"cidrs": ["portal.example.com"]}}, "/portal/cidrs"),
    (BANK_NODE, {"portal": {"url": "portal.example.com"}}, "/portal/url"),
    (BANK_NODE, {"metrics": {"port": 70000}}, "/metrics/port"),
]


@pytest.mark.parametrize(
    ("chart", "values", "where"),
    BAD_VALUES,
    ids=[f"{chart.name}:{where}:{i}" for i, (chart, _, where) in enumerate(BAD_VALUES)],
)
def test_values_schema_rejects_a_bad_value(chart: Path, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render(chart, copy.deepcopy(values))


def test_bank_node_pins_the_genesis_secret_and_its_guardrails_reach_the_node_config(
    tmp_path: Path,
) -> None:
    from bank_node.config import load_config

    values = {
        "secrets": {"genesis": {"existingSecret": "acme-genesis", "key": "genesis.json"}},
        "config": {
            "reportMetrics": True,
            "guardrails": {"dpRequired": True, "epsilonCeiling": 8, "maxRoundsPerDay": 6},
        },
    }
    objs = objects(BANK_NODE, values)
    spec = the(objs, "Deployment")["spec"]["template"]["spec"]
    sources = [
        s["secret"] for v in spec["volumes"] for s in v.get("projected", {}).get("sources", [])
    ]
    assert {
        "name": "acme-genesis",
        "items": [{"key": "genesis.json", "path": "genesis/genesis.json"}],
    } in sources
    path = tmp_path / "config.toml"
    path.write_text(the(objs, "ConfigMap")["data"]["config.toml"])
    config = load_config(path)
    assert str(config.genesis_file) == "/run/secrets/bank-node/genesis/genesis.json"
    assert config.report_metrics is True
    rails = config.guardrails
    assert (rails.dp_required, rails.epsilon_ceiling, rails.max_rounds_per_day) == (True, 8.0, 6)
    assert (rails.min_cohort, rails.max_model_parameters) == (3, None)


def test_bank_node_without_a_genesis_secret_renders_no_genesis_file() -> None:
    text = the(objects(BANK_NODE), "ConfigMap")["data"]["config.toml"]
    assert "genesis_file" not in tomllib.loads(text)
    assert tomllib.loads(text)["report_metrics"] is False

"""The bank-node chart's scoring service: one replica writing its state, probes, its own
selectors, a token from a Secret, no bank key, and a config the node's loader accepts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from bank_node.config import load_config
from tests.helm.test_charts import BANK_NODE, objects, the

CLIENTS = [{"podSelector": {"matchLabels": {"app": "payments"}}}]
SERVE_VALUES: dict[str, Any] = {
    "serve": {"enabled": True, "clientsFrom": CLIENTS, "modelDir": "state/models/v3"}
}


@pytest.fixture(scope="module")
def serve_objects() -> list[dict[str, Any]]:
    return objects(BANK_NODE, copy.deepcopy(SERVE_VALUES))


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_scoring_service_is_off_by_default():
    names = [o["metadata"]["name"] for o in objects(BANK_NODE, None)]
    assert not [n for n in names if n.endswith("-serve")]


def test_one_replica_recreated_so_the_account_state_has_one_writer(serve_objects):
    deployment = the(serve_objects, "Deployment", "-serve")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", "--config", "/etc/bank-node/config.toml"]
    assert container["resources"]["limits"]["cpu"] == "1"


def test_its_probes_are_the_services_healthz_and_readyz(serve_objects):
    container = the(serve_objects, "Deployment", "-serve")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8780, "protocol": "TCP"}]


def test_no_selector_of_the_node_matches_the_service_pods_nor_the_reverse(serve_objects):
    node = the(serve_objects, "Deployment", "bank-node")
    serve = the(serve_objects, "Deployment", "-serve")
    node_labels = node["spec"]["template"]["metadata"]["labels"]
    serve_labels = serve["spec"]["template"]["metadata"]["labels"]
    assert not _labels_match(node["spec"]["selector"]["matchLabels"], serve_labels)
    assert not _labels_match(serve["spec"]["selector"]["matchLabels"], node_labels)
    node_policy = the(serve_objects, "NetworkPolicy", "bank-node")
    assert not _labels_match(node_policy["spec"]["podSelector"]["matchLabels"], serve_labels)
    for kind in ("Service", "PodDisruptionBudget"):
        selector = the(serve_objects, kind, "-serve")["spec"]["selector"]
        assert _labels_match(selector.get("matchLabels", selector), serve_labels)


def test_it_runs_beside_the_node_on_the_nodes_volume_without_the_banks_keys(serve_objects):
    spec = the(serve_objects, "Deployment", "-serve")["spec"]["template"]["spec"]
    affinity = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    node = the(serve_objects, "Deployment", "bank-node")
    assert affinity["labelSelector"]["matchLabels"] == node["spec"]["selector"]["matchLabels"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "bank-node-data"}
    assert volumes["token"]["secret"]["secretName"] == "bank-node-serve-token"
    assert "keys" not in volumes


def test_without_colocation_there_is_no_affinity():
    values = copy.deepcopy(SERVE_VALUES)
    values["serve"]["colocateWithNode"] = False
    spec = the(objects(BANK_NODE, values), "Deployment", "-serve")["spec"]["template"]["spec"]
    assert "affinity" not in spec


def test_only_the_bank_clients_and_the_scrapers_may_connect_and_it_connects_nowhere(
    serve_objects,
):
    policy = the(serve_objects, "NetworkPolicy", "-serve")["spec"]
    assert policy["egress"] == []
    (rule,) = policy["ingress"]
    assert rule["from"][0] == CLIENTS[0] and len(rule["from"]) == 2  # + the monitoring scraper
    assert rule["ports"] == [{"port": 8780, "protocol": "TCP"}]
    service = the(serve_objects, "Service", "-serve")["spec"]
    assert service["type"] == "ClusterIP"


def test_the_pdb_lets_a_drain_move_the_single_replica(serve_objects):
    assert the(serve_objects, "PodDisruptionBudget", "-serve")["spec"]["maxUnavailable"] == 1


def test_the_rendered_config_loads_and_names_the_mounted_token(serve_objects, tmp_path: Path):
    text = the(serve_objects, "ConfigMap", "-serve")["data"]["config.toml"]
    path = tmp_path / "config.toml"
    path.write_text(text)
    serve = load_config(path).serve
    assert serve.host == "0.0.0.0" and serve.port == 8780 and serve.max_batch == 1000
    assert serve.token_file == Path("/run/secrets/bank-node-serve/token")
    assert serve.model_dir == Path("/var/lib/bank-node/state/models/v3")
    mounts = the(serve_objects, "Deployment", "-serve")["spec"]["template"]["spec"]
    mounted = {m["name"]: m["mountPath"] for m in mounts["containers"][0]["volumeMounts"]}
    assert mounted["token"] == str(serve.token_file.parent)


@pytest.mark.parametrize(
    "serve",
    [{"maxBatch": 0}, {"token": {"existingSecret": "Not_A_Name", "key": "token"}},
     {"modelDir": "/absolute"}, {"replicas": 2}],
)  # fmt: skip
def test_the_schema_rejects_a_bad_serve_value(serve):
    values = copy.deepcopy(SERVE_VALUES)
    values["serve"].update(serve)
    with pytest.raises(helm.HelmValuesError):
        objects(BANK_NODE, values)

"""The bank-node chart's training workers: a StatefulSet of `bank-node train-worker` with
NODE_RANK from the pod index, no bank key, the node as NODE_RANK 0, and a config the node's
loader accepts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from bank_node.cli import parser
from bank_node.config import load_config
from tests.helm.test_charts import BANK_NODE, env_of, objects, the

TRAIN_VALUES: dict[str, Any] = {
    "trainWorkers": {"enabled": True, "replicas": 2, "sharedClaim": "alpha-shared"}
}
SHARED = "/var/lib/bank-node-shared"


@pytest.fixture(scope="module")
def train_objects() -> list[dict[str, Any]]:
    return objects(BANK_NODE, copy.deepcopy(TRAIN_VALUES))


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def test_the_training_workers_are_off_by_default(tmp_path: Path):
    objs = objects(BANK_NODE, None)
    assert not [o for o in objs if o["kind"] == "StatefulSet"]
    path = tmp_path / "config.toml"
    path.write_text(the(objs, "ConfigMap")["data"]["config.toml"])
    assert load_config(path).training.num_nodes == 1


def test_each_worker_runs_train_worker_with_node_rank_from_its_pod_index(train_objects):
    workers = the(train_objects, "StatefulSet", "-train-worker")
    assert workers["spec"]["replicas"] == 2
    (container,) = _pod(workers)["containers"]
    assert container["command"] == ["bank-node"]
    args = parser().parse_args(container["args"])  # the CLI's own arguments
    assert args.func.__name__ == "cmd_train_worker"
    assert (args.num_nodes, args.devices, args.pod_index_env) == (3, 1, "POD_INDEX")
    assert args.session_dir == f"{SHARED}/sessions"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["MASTER_ADDR"]["value"] == "rel-bank-node-rendezvous"
    assert env["MASTER_PORT"]["value"] == "29500"


def test_a_worker_mounts_the_shared_volume_and_no_key_of_the_bank(train_objects):
    pod = _pod(the(train_objects, "StatefulSet", "-train-worker"))
    assert not [v for v in pod["volumes"] if "projected" in v or "secret" in v]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v]  # fmt: skip
    assert claims == ["alpha-shared"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["shared"] == SHARED


def test_the_node_is_rank_zero_of_replicas_plus_one_on_the_shared_volume(
    train_objects, tmp_path: Path
):
    path = tmp_path / "config.toml"
    path.write_text(the(train_objects, "ConfigMap")["data"]["config.toml"])
    training = load_config(path).training
    assert (training.num_nodes, training.devices, training.strategy) == (3, 1, "ddp_spawn")
    assert training.streams and training.join_timeout_seconds == 600
    assert training.session_dir == Path(SHARED) / "sessions"
    assert training.work_dir == Path(SHARED) / "train-work"
    node = the(train_objects, "Deployment", "bank-node")
    env = env_of(_pod(node)["containers"][0])
    assert env["MASTER_ADDR"]["value"] == "rel-bank-node-rendezvous"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert "NODE_RANK" not in env
    claims = [v["persistentVolumeClaim"]["claimName"] for v in _pod(node)["volumes"]
              if "persistentVolumeClaim" in v]  # fmt: skip
    assert sorted(claims) == ["alpha-shared", "bank-node-data"]


def test_the_rendezvous_service_selects_the_node_pod_and_no_worker(train_objects):
    service = the(train_objects, "Service", "-rendezvous")
    node = the(train_objects, "Deployment", "bank-node")["spec"]["template"]["metadata"]
    worker = the(train_objects, "StatefulSet", "-train-worker")["spec"]["template"]["metadata"]
    assert service["spec"]["clusterIP"] == "None"
    assert _matches(service["spec"]["selector"], node["labels"])
    assert not _matches(service["spec"]["selector"], worker["labels"])
    workers = the(train_objects, "StatefulSet", "-train-worker")["spec"]["selector"]
    assert not _matches(workers["matchLabels"], node["labels"])


def test_workers_reach_only_the_node_pod_their_peers_and_dns(train_objects):
    policy = the(train_objects, "NetworkPolicy", "-train-worker")["spec"]
    peers = [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
             for p in policy["egress"][0]["to"]]  # fmt: skip
    assert peers == ["bank-node", "bank-node-train-worker"]
    assert [p["port"] for p in policy["egress"][1]["ports"]] == [53, 53]
    assert len(policy["egress"]) == 2
    node_policy = the(train_objects, "NetworkPolicy", "bank-node")["spec"]
    from_workers = [rule for rule in node_policy["ingress"]
                    if rule["from"][0].get("podSelector", {}).get("matchLabels", {})
                    .get("app.kubernetes.io/name") == "bank-node-train-worker"]  # fmt: skip
    assert len(from_workers) == 1


def test_the_schema_refuses_zero_workers():
    with pytest.raises(helm.HelmValuesError, match="replicas"):
        objects(BANK_NODE, {"trainWorkers": {"enabled": True, "replicas": 0}})

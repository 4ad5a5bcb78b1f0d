"""What a bank's platform team and the operator can add to the charts: extra env, volumes
and init containers, an egress proxy, a private CA bundle, the node's client certificate,
the retention CronJob and several schedulers."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.helm.test_charts import BANK_NODE, PORTAL, env_of, objects, pod_specs, the

# A strict init container, as the values' comments ask for (checkov checks it too).
INIT = {
    "name": "wait-for-proxy",
    "image": "registry.example.com/tools/busybox:1.36.1",
    "imagePullPolicy": "IfNotPresent",
    "command": ["sh", "-c", "true"],
    "resources": {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "100m", "memory": "32Mi"},
    },
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}
EXTRAS = {
    "extraVolumes": [{"name": "bank-policy", "configMap": {"name": "bank-policy"}}],
    "extraVolumeMounts": [{"name": "bank-policy", "mountPath": "/etc/bank-policy"}],
    "initContainers": [INIT],
}
PROXY = {
    "httpsProxy": "http://proxy.bank.internal:3128",
    "noProxy": ["localhost", ".svc.cluster.local"],
    "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
    "port": 3128,
}
BANK_VALUES: dict[str, Any] = {
    **EXTRAS,
    "extraEnv": [{"name": "TZ", "value": "Europe/Amsterdam"}],
    "proxy": PROXY,
    "portal": {"cidrs": []},
    "caBundle": {"configMap": "bank-ca", "key": "bundle.pem"},
    "secrets": {"clientCertificate": {"existingSecret": "bank-node-client-tls"}},
}
PORTAL_VALUES: dict[str, Any] = {
    **EXTRAS,
    "proxy": PROXY,
    "caBundle": {"secret": "portal-ca"},
    "retention": {"enabled": True, "keepPublishedRounds": 30, "timeZone": "Europe/Amsterdam"},
}

S3 = {
    "enabled": True,
    "bucket": "consortium-blobs",
    "prefix": "prod/",
    "endpointUrl": "https://minio.storage.svc:9000",
    "credentialsSecret": "portal-s3",
}
PORTAL_S3_VALUES: dict[str, Any] = {
    "blobStorage": {"s3": S3},
    "caBundle": {"secret": "portal-ca"},
    "retention": {"enabled": True},
}


def node_pod(values: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    objs = objects(BANK_NODE, copy.deepcopy(values))
    return objs, the(objs, "Deployment")["spec"]["template"]["spec"]


def mount_of(container: dict[str, Any], file: str) -> dict[str, Any]:
    return next(m for m in container["volumeMounts"] if file.startswith(m["mountPath"] + "/"))


# --- the bank node ---------------------------------------------------------------------------


def test_bank_node_takes_extra_env_volumes_mounts_and_init_containers():
    _, spec = node_pod(BANK_VALUES)
    (node,) = spec["containers"]
    assert env_of(node)["TZ"]["value"] == "Europe/Amsterdam"
    assert spec["initContainers"] == [INIT]
    assert {"name": "bank-policy", "configMap": {"name": "bank-policy"}} in spec["volumes"]
    assert {"name": "bank-policy", "mountPath": "/etc/bank-policy"} in node["volumeMounts"]


def test_bank_node_goes_through_the_proxy_and_may_reach_only_the_proxy_and_dns():
    objs, spec = node_pod(BANK_VALUES)
    env = env_of(spec["containers"][0])
    assert env["HTTPS_PROXY"]["value"] == "http://proxy.bank.internal:3128"
    assert env["NO_PROXY"]["value"] == "localhost,.svc.cluster.local"
    proxy_rule, dns_rule = the(objs, "NetworkPolicy")["spec"]["egress"]
    assert proxy_rule == {
        "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
        "ports": [{"port": 3128, "protocol": "TCP"}],
    }
    assert {p["port"] for p in dns_rule["ports"]} == {53}


def test_bank_node_with_proxy_and_portal_addresses_allows_both():
    values = copy.deepcopy(BANK_VALUES) | {"portal": {"cidrs": ["198.51.100.7/32"]}}
    objs, _ = node_pod(values)
    ports = [rule["ports"][0]["port"] for rule in the(objs, "NetworkPolicy")["spec"]["egress"]]
    assert ports == [443, 3128, 53]


def test_bank_node_without_a_proxy_sets_no_proxy_variables():
    _, spec = node_pod(None)
    env = env_of(spec["containers"][0])
    assert not {"HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} & set(env)
    assert "initContainers" not in spec


@pytest.mark.parametrize(
    ("bundle", "source"),
    [
        ({"configMap": "bank-ca", "key": "bundle.pem"}, ("configMap", "name", "bank-ca")),
        (
            {"secret": "bank-ca-secret", "key": "bundle.pem"},
            ("secret", "secretName", "bank-ca-secret"),
        ),
    ],
    ids=["configmap", "secret"],
)
def test_the_ca_bundle_is_mounted_read_only_where_requests_looks_for_it(bundle, source):
    _, spec = node_pod({"caBundle": bundle})
    (node,) = spec["containers"]
    env = env_of(node)
    path = env["REQUESTS_CA_BUNDLE"]["value"]
    assert env["SSL_CERT_FILE"]["value"] == path
    mount = mount_of(node, path)
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    kind, field, name = source
    assert volume[kind][field] == name
    assert volume[kind]["items"] == [{"key": "bundle.pem", "path": Path(path).name}]


def test_the_client_certificate_is_projected_with_the_keys_and_named_in_the_node_config(
    tmp_path: Path,
):
    from bank_node.config import load_config

    objs, spec = node_pod(BANK_VALUES)
    sources = [
        s["secret"] for v in spec["volumes"] for s in v.get("projected", {}).get("sources", [])
    ]
    assert {
        "name": "bank-node-client-tls",
        "items": [
            {"key": "tls.crt", "path": "tls/tls.crt"},
            {"key": "tls.key", "path": "tls/tls.key"},
        ],
    } in sources
    text = the(objs, "ConfigMap")["data"]["config.toml"]
    (tmp_path / "config.toml").write_text(text)
    config = load_config(tmp_path / "config.toml")
    keys = mount_of(spec["containers"][0], str(config.tls_client_cert_file))
    assert keys["readOnly"] is True
    assert str(config.tls_client_cert_file) == f"{keys['mountPath']}/tls/tls.crt"
    assert str(config.tls_client_key_file) == f"{keys['mountPath']}/tls/tls.key"


def test_without_a_client_certificate_the_node_config_names_none():
    text = the(objects(BANK_NODE), "ConfigMap")["data"]["config.toml"]
    assert not {"tls_client_cert_file", "tls_client_key_file"} & set(tomllib.loads(text))


BAD_BANK_VALUES = [
    ({"proxy": {"httpsProxy": "http://proxy:3128"}}, "/proxy/to"),
    ({"proxy": {"httpsProxy": "proxy:3128", "to": PROXY["to"]}}, "/proxy/httpsProxy"),
    ({"caBundle": {"configMap": "a", "secret": "b"}}, "/caBundle"),
    ({"secrets": {"clientCertificate": {"existingSecret": "Bad_Name"}}}, "clientCertificate"),
    ({"initContainers": [{"image": "x"}]}, "/initContainers/0"),
    ({"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}, "/extraVolumeMounts/0"),
]


@pytest.mark.parametrize(("values", "where"), BAD_BANK_VALUES, ids=[w for _, w in BAD_BANK_VALUES])
def test_the_bank_node_schema_rejects_a_bad_extension_value(values, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        objects(BANK_NODE, copy.deepcopy(values))


# --- the portal ----------------------------------------------------------------------------


def test_every_portal_pod_gets_the_extra_volumes_proxy_and_ca_bundle():
    objs = objects(PORTAL, copy.deepcopy(PORTAL_VALUES))
    specs = dict(pod_specs(objs))
    cronjob = the(objs, "CronJob", "-retention")
    specs["retention"] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert len(specs) == 4  # web, scheduler, migrations, retention
    for name, spec in specs.items():
        (box,) = spec["containers"]
        env = env_of(box, objs)
        assert env["HTTPS_PROXY"]["value"] == PROXY["httpsProxy"], name
        ca = env["SSL_CERT_FILE"]["value"]
        assert env["REQUESTS_CA_BUNDLE"]["value"] == env["PGSSLROOTCERT"]["value"] == ca
        volume = next(v for v in spec["volumes"] if v["name"] == mount_of(box, ca)["name"])
        assert volume["secret"]["secretName"] == "portal-ca", name
        assert {"name": "bank-policy", "mountPath": "/etc/bank-policy"} in box["volumeMounts"]
    for suffix in ("-web", "-scheduler"):
        spec = the(objs, "Deployment", suffix)["spec"]["template"]["spec"]
        assert spec["initContainers"] == [INIT]


def test_the_portal_network_policy_lets_the_pods_reach_the_proxy():
    objs = objects(PORTAL, copy.deepcopy(PORTAL_VALUES))
    egress = the(objs, "NetworkPolicy")["spec"]["egress"]
    assert {"to": PROXY["to"], "ports": [{"port": 3128, "protocol": "TCP"}]} in egress


def test_the_retention_cronjob_runs_the_command_on_the_blob_volume_one_run_at_a_time():
    objs = objects(PORTAL, copy.deepcopy(PORTAL_VALUES))
    cronjob = the(objs, "CronJob", "-retention")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["timeZone"] == "Europe/Amsterdam"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    (box,) = pod["spec"]["containers"]
    assert box["command"][:3] == ["python", "manage.py", "blobs_retain"]
    assert "--keep-published=30" in box["command"]
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    web = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    claims = [
        {
            v["persistentVolumeClaim"]["claimName"]
            for v in s["volumes"]
            if "persistentVolumeClaim" in v
        }
        for s in (web, pod["spec"])
    ]
    assert claims[0] == claims[1] and len(claims[0]) == 1
    blob_dir = env_of(box, objs)["CONSORTIUM_BLOB_DIR"]["value"]
    assert any(m["mountPath"] == blob_dir for m in box["volumeMounts"])
    # The release's NetworkPolicy (database egress) applies to the CronJob's pods too.
    selector = the(objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_the_command_line_accepts_the_arguments_the_cronjob_passes():
    from consortium.rounds.management.commands.blobs_retain import Command

    box = the(objects(PORTAL, copy.deepcopy(PORTAL_VALUES)), "CronJob")["spec"]["jobTemplate"]
    command = box["spec"]["template"]["spec"]["containers"][0]["command"]
    parser = Command().create_parser("manage.py", "blobs_retain")
    parsed = parser.parse_args(command[3:])
    assert (parsed.keep_published, parsed.actor) == (30, "retention-cronjob")


def test_retention_is_off_unless_asked_for():
    assert not [o for o in objects(PORTAL) if o["kind"] == "CronJob"]


BAD_PORTAL_VALUES = [
    ({"retention": {"keepPublishedRounds": 0}}, "/retention/keepPublishedRounds"),
    ({"retention": {"schedule": "daily"}}, "/retention/schedule"),
    ({"scheduler": {"replicaCount": 0}}, "/scheduler/replicaCount"),
    ({"proxy": {"httpsProxy": "http://proxy:3128"}}, "/proxy/to"),
    ({"caBundle": {"configMap": "a", "secret": "b"}}, "/caBundle"),
]


@pytest.mark.parametrize(
    ("values", "where"), BAD_PORTAL_VALUES, ids=[w for _, w in BAD_PORTAL_VALUES]
)
def test_the_portal_schema_rejects_a_bad_extension_value(values, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        objects(PORTAL, copy.deepcopy(values))


# --- the portal's ciphertexts in an S3-compatible bucket --------------------------------------


def test_with_s3_every_portal_pod_stages_on_an_emptydir_and_no_claim_is_made():
    objs = objects(PORTAL, copy.deepcopy(PORTAL_S3_VALUES))
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    specs = [spec for _, spec in pod_specs(objs)]
    specs.append(the(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    staged = [v for spec in specs for v in spec["volumes"] if v["name"] == "blobs"]
    assert len(staged) == 3  # web, scheduler, retention (the migration job mounts none)
    assert all(v == {"name": "blobs", "emptyDir": {"sizeLimit": "20Gi"}} for v in staged)


def test_with_s3_the_settings_name_the_bucket_and_credentials_come_from_the_secret():
    objs = objects(PORTAL, copy.deepcopy(PORTAL_S3_VALUES))
    web = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(web, objs)
    assert env["CONSORTIUM_BLOB_STORE"]["value"] == "s3"
    assert env["CONSORTIUM_S3_BUCKET"]["value"] == "consortium-blobs"
    assert env["CONSORTIUM_S3_PREFIX"]["value"] == "prod/"
    assert env["CONSORTIUM_S3_ENDPOINT_URL"]["value"] == "https://minio.storage.svc:9000"
    # The keys are files from the Secret, never environment values.
    assert env["CONSORTIUM_S3_ACCESS_KEY_ID_FILE"]["value"] == "/run/secrets/s3/AWS_ACCESS_KEY_ID"
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    (mount,) = [m for m in web["volumeMounts"] if m["name"] == "s3-credentials"]
    assert mount == {"name": "s3-credentials", "mountPath": "/run/secrets/s3", "readOnly": True}
    pod = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "s3-credentials"]
    assert volume["secret"]["secretName"] == "portal-s3"
    assert env["AWS_CA_BUNDLE"]["value"] == env["SSL_CERT_FILE"]["value"]


def test_without_s3_the_blobs_stay_on_the_claim_and_no_s3_setting_is_rendered():
    objs = objects(PORTAL)
    claim = the(objs, "PersistentVolumeClaim")["metadata"]["name"]
    web = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    (blobs,) = [v for v in web["volumes"] if v["name"] == "blobs"]
    assert blobs["persistentVolumeClaim"]["claimName"] == claim
    assert not [k for k in env_of(web["containers"][0], objs) if "S3" in k or "AWS" in k]


def test_s3_without_a_bucket_is_refused_when_rendering():
    with pytest.raises(helm.HelmValuesError, match="bucket"):
        objects(PORTAL, {"blobStorage": {"s3": {"enabled": True}}})

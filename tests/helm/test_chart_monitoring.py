"""What the charts wire for operations: metrics endpoints and their protection, probes on
real health endpoints, the portal's signing key, ServiceMonitors, PrometheusRules and
the Ingress."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.helm.test_charts import BANK_NODE, PORTAL, env_of, objects, pod_specs, the

ROOT = Path(__file__).resolve().parents[2]
TOKEN = {"metrics": {"token": {"existingSecret": "portal-metrics"}}}
MONITORED = {
    "metrics": {
        "token": {"existingSecret": "portal-metrics", "key": "bearer"},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
    }
}


def container(objs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (only,) = the(objs, kind, suffix)["spec"]["template"]["spec"]["containers"]
    return only


def mounted_file(spec: dict[str, Any], path: str) -> tuple[str, str, dict[str, Any]]:
    """(Secret name, key, mount) behind the file at ``path`` in the pod ``spec``."""
    (box,) = spec["containers"]
    mount = next(m for m in box["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    key = path.removeprefix(mount["mountPath"] + "/")
    items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
    return volume["secret"]["secretName"], items.get(key, key), mount


# --- the portal's web tier -----------------------------------------------------------------


def test_web_pods_run_gunicorn_with_the_multiprocess_config_and_a_memory_metrics_dir():
    objs = objects(PORTAL)
    web = container(objs, "Deployment", "-web")
    assert "--config=/app/gunicorn.conf.py" in web["args"]
    env = env_of(web)
    multiproc = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
    mount = next(m for m in web["volumeMounts"] if m["mountPath"] == multiproc)
    spec = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"]
    # Only the web tier shares a multiprocess directory; the scheduler serves its own.
    assert "PROMETHEUS_MULTIPROC_DIR" not in env_of(container(objs, "Deployment", "-scheduler"))


def test_the_image_puts_the_gunicorn_config_where_the_chart_points():
    dockerfile = (ROOT / "docker" / "portal.Dockerfile").read_text()
    assert re.search(
        r"^COPY consortium/gunicorn\.conf\.py /app/gunicorn\.conf\.py$", dockerfile, re.M
    )
    assert "--config=/app/gunicorn.conf.py" in dockerfile


def test_without_a_token_only_the_allowed_networks_may_scrape():
    objs = objects(PORTAL)
    env = env_of(container(objs, "Deployment", "-web"), objs)
    assert "CONSORTIUM_METRICS_TOKEN_FILE" not in env
    assert env["CONSORTIUM_METRICS_ALLOWED_CIDRS"]["value"] == "127.0.0.1/32,::1/128"


def test_the_metrics_token_comes_from_its_secret_as_a_read_only_file():
    objs = objects(PORTAL, copy.deepcopy(TOKEN))
    spec = the(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    path = env_of(spec["containers"][0])["CONSORTIUM_METRICS_TOKEN_FILE"]["value"]
    secret, key, mount = mounted_file(spec, path)
    assert (secret, key, mount["readOnly"]) == ("portal-metrics", "token", True)
    assert not any(
        e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "portal-metrics"
        for e in spec["containers"][0]["env"]
    )


def test_the_pod_ip_is_an_allowed_host_so_prometheus_can_scrape_a_pod_by_address():
    env = container(objects(PORTAL), "Deployment", "-web")["env"]
    names = [e["name"] for e in env]
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")  # $(POD_IP) expands
    assert env_of({"env": env})["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env_of({"env": env})["DJANGO_ALLOWED_HOSTS"]["value"].split(",")[-1] == "$(POD_IP)"


# --- the portal's signing key ----------------------------------------------------------------


def test_every_portal_pod_reads_the_signing_key_from_the_named_secret():
    values = {"secrets": {"portalSigningKey": {"existingSecret": "prod-key", "key": "k.pem"}}}
    objs = objects(PORTAL, values)
    specs = dict(pod_specs(objs))
    assert len(specs) == 3
    for name, spec in specs.items():
        env = env_of(spec["containers"][0], objs)
        path = env["CONSORTIUM_PORTAL_SIGNING_KEY_FILE"]["value"]
        secret, key, mount = mounted_file(spec, path)
        assert (secret, key, mount["readOnly"]) == ("prod-key", "k.pem", True), name


@pytest.mark.parametrize("secret", ["", None, "Bad_Name"])
def test_the_portal_signing_key_secret_is_required(secret):
    values = {"secrets": {"portalSigningKey": {"existingSecret": secret}}}
    with pytest.raises(helm.HelmValuesError, match="portalSigningKey"):
        objects(PORTAL, values)


# --- the scheduler -------------------------------------------------------------------------


def test_the_scheduler_serves_metrics_and_is_probed_on_its_health_endpoints():
    objs = objects(PORTAL, {"scheduler": {"metricsPort": 9911}})
    scheduler = container(objs, "Deployment", "-scheduler")
    assert scheduler["ports"] == [{"name": "metrics", "containerPort": 9911, "protocol": "TCP"}]
    assert env_of(scheduler, objs)["CONSORTIUM_SCHEDULER_METRICS_PORT"]["value"] == "9911"
    assert scheduler["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert scheduler["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    service = the(objs, "Service", "-scheduler-metrics")
    pod_labels = the(objs, "Deployment", "-scheduler")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "scheduler"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["port"] == 9911


def test_the_command_line_scheduler_reads_the_port_the_chart_sets():
    from consortium.rounds.management.commands.run_scheduler import Command

    parser = Command().create_parser("manage.py", "run_scheduler")
    assert parser.parse_args(["--metrics-port", "9101"]).metrics_port == 9101


# --- ServiceMonitor and PrometheusRule ----------------------------------------------------


def test_the_portal_service_monitor_scrapes_web_with_the_token_and_the_scheduler():
    objs = objects(PORTAL, copy.deepcopy(MONITORED))
    monitor = the(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    web_ep, scheduler_ep = monitor["spec"]["endpoints"]
    assert web_ep["port"] == "http" and web_ep["path"] == "/metrics"
    assert web_ep["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "portal-metrics", "key": "bearer"},
    }
    assert scheduler_ep["port"] == "metrics" and "authorization" not in scheduler_ep
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = {s["metadata"]["name"]: s for s in objs if s["kind"] == "Service"}
    selected = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
    ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert len(selected) == 2 and {"http", "metrics"} <= ports


def test_a_service_monitor_without_the_metrics_token_is_refused():
    values = {"metrics": {"serviceMonitor": {"enabled": True}}}
    with pytest.raises(helm.HelmValuesError, match="existingSecret"):
        objects(PORTAL, values)


def test_the_bank_node_service_monitor_scrapes_its_metrics_service():
    objs = objects(BANK_NODE, {"metrics": {"serviceMonitor": {"enabled": True}}})
    monitor = the(objs, "ServiceMonitor")
    service = the(objs, "Service", "-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert service["spec"]["publishNotReadyAddresses"] is True


@pytest.mark.parametrize("chart", [PORTAL, BANK_NODE], ids=lambda c: c.name)
def test_the_prometheus_rule_embeds_the_rule_file_promtool_tests(chart, tmp_path):
    objs = objects(
        chart,
        copy.deepcopy(MONITORED)
        if chart == PORTAL
        else {"metrics": {"prometheusRule": {"enabled": True}}},
    )
    rule = the(objs, "PrometheusRule")
    source = yaml.safe_load((chart / "files" / "prometheus-rules.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    promtool = shutil.which("promtool")
    if promtool:  # the rendered spec is itself a valid Prometheus rule file
        path = tmp_path / "rules.yml"
        path.write_text(yaml.safe_dump(rule["spec"]))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("chart", [PORTAL, BANK_NODE], ids=lambda c: c.name)
def test_every_rule_of_the_prometheus_rule_links_its_runbook_under_the_chosen_base(chart):
    values = copy.deepcopy(MONITORED) if chart == PORTAL else {"metrics": {}}
    values["metrics"]["prometheusRule"] = {
        "enabled": True,
        "runbookBaseUrl": "https://docs.bank.example/consortium/runbooks/",
    }
    rules = [
        r
        for g in the(objects(chart, values), "PrometheusRule")["spec"]["groups"]
        for r in g["rules"]
    ]
    assert rules
    for rule in rules:
        expected = f"https://docs.bank.example/consortium/runbooks/{rule['alert']}.md"
        assert rule["annotations"]["runbook_url"] == expected


@pytest.mark.parametrize("chart", [PORTAL, BANK_NODE], ids=lambda c: c.name)
def test_monitoring_objects_are_opt_in(chart):
    kinds = {o["kind"] for o in objects(chart)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "Ingress"}


# --- the bank node ---------------------------------------------------------------------------


def test_the_bank_node_is_probed_on_its_health_endpoints_on_the_metrics_port():
    node = container(objects(BANK_NODE), "Deployment")
    assert node["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert node["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    off = container(objects(BANK_NODE, {"metrics": {"readinessProbe": False}}), "Deployment")
    assert "readinessProbe" not in off and "livenessProbe" in off


# --- the Ingress ---------------------------------------------------------------------------


def test_the_ingress_routes_its_hosts_to_the_web_service_with_tls():
    values = {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": [
                {"host": "portal.bank.example", "paths": [{"path": "/", "pathType": "Prefix"}]}
            ],
            "tls": [{"secretName": "portal-tls", "hosts": ["portal.bank.example"]}],
        }
    }
    objs = objects(PORTAL, values)
    ingress = the(objs, "Ingress")
    service = the(objs, "Service", "-portal")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "portal-tls", "hosts": ["portal.bank.example"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert rule["host"] == "portal.bank.example"
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"ingress": {"hosts": []}}, "/ingress/hosts"),
        (
            {
                "ingress": {
                    "hosts": [
                        {"host": "Not A Host", "paths": [{"path": "/", "pathType": "Prefix"}]}
                    ]
                }
            },
            "/ingress/hosts/0/host",
        ),
        (
            {
                "ingress": {
                    "hosts": [{"host": "a.example", "paths": [{"path": "/", "pathType": "Any"}]}]
                }
            },
            "pathType",
        ),
        ({"metrics": {"allowedCidrs": ["10.0.0.0"]}}, "/metrics/allowedCidrs/0"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "/metrics/serviceMonitor/interval"),
        ({"scheduler": {"metricsPort": 0}}, "/scheduler/metricsPort"),
    ],
    ids=["no-hosts", "bad-host", "bad-path-type", "bad-cidr", "bad-interval", "port-0"],
)
def test_the_portal_schema_rejects_bad_monitoring_and_ingress_values(values, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        objects(PORTAL, copy.deepcopy(values))


# --- the settings ConfigMap ------------------------------------------------------------------


def test_plain_settings_live_in_a_config_map_and_the_migration_job_gets_them_inline():
    objs = objects(PORTAL, {"django": {"logLevel": "WARNING"}})
    config = the(objs, "ConfigMap")
    assert config["data"]["CONSORTIUM_LOG_LEVEL"] == "WARNING"
    assert not {"DATABASE_URL", "DJANGO_SECRET_KEY"} & set(config["data"])
    for suffix in ("-web", "-scheduler"):
        box = container(objs, "Deployment", suffix)
        assert box["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    # The hook Job runs before the ConfigMap exists on a first install.
    job_env = env_of(container(objs, "Job"))
    assert {k: v["value"] for k, v in job_env.items() if k in config["data"]} == config["data"]


def test_changing_a_setting_rolls_the_web_and_scheduler_pods():
    def checksums(values: dict[str, Any] | None) -> list[str]:
        objs = objects(PORTAL, values)
        return [
            the(objs, "Deployment", s)["spec"]["template"]["metadata"]["annotations"][
                "checksum/settings"
            ]
            for s in ("-web", "-scheduler")
        ]

    assert checksums(None) != checksums({"django": {"connMaxAge": 0}})


# --- Grafana dashboards ------------------------------------------------------------------


@pytest.mark.parametrize("chart", [PORTAL, BANK_NODE], ids=lambda c: c.name)
def test_the_dashboard_ships_as_a_config_map_labelled_for_grafanas_sidecar(chart):
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}}
    objs = objects(chart, values)
    board = the(objs, "ConfigMap", "-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Consortium"}
    assert board["metadata"]["namespace"] == "monitoring"
    ((name, text),) = board["data"].items()
    assert name.endswith(".json")
    shipped = json.loads(text)
    assert shipped == json.loads((chart / "files" / "grafana-dashboard.json").read_text())
    assert shipped["uid"] and shipped["panels"]


def test_the_sidecar_label_and_folder_can_be_changed():
    values = {
        "metrics": {
            "grafanaDashboard": {
                "enabled": True,
                "label": "grafana.com/dashboard",
                "labelValue": "consortium",
                "folder": "",
            }
        }
    }
    board = the(objects(BANK_NODE, values), "ConfigMap", "-dashboard")
    assert board["metadata"]["labels"]["grafana.com/dashboard"] == "consortium"
    assert "annotations" not in board["metadata"]


@pytest.mark.parametrize("chart", [PORTAL, BANK_NODE], ids=lambda c: c.name)
def test_the_ops_dashboards_are_links_to_the_charts_copies(chart):
    link = ROOT / "ops" / "grafana" / ("portal.json" if chart == PORTAL else "bank-node.json")
    assert link.is_symlink()
    assert link.resolve() == (chart / "files" / "grafana-dashboard.json").resolve()

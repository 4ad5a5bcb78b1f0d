"""The portal chart's optional uploads pool: a second web Deployment that the Ingress sends
the bulk transfers to, so that status polls never wait behind an upload."""

from __future__ import annotations

import copy
import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from django.urls import resolve

from tests.helm.test_charts import PORTAL, env_of, objects, the

HOST = "portal.consortium.example"
UPLOADS_VALUES: dict[str, Any] = {
    "uploads": {"enabled": True, "replicaCount": 2, "niceness": 12},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "300m"},
        "hosts": [{"host": HOST, "paths": [{"path": "/", "pathType": "Prefix"}]}],
    },
}
# Requests a bank node, an operator or an auditor sends, and the Django route each reaches.
BULK = {
    "/api/v1/rounds/7/update": "round-update",
    "/api/v1/rounds/12/aggregate": "round-aggregate",
    "/api/v1/rounds/7/submissions/bank-alpha": "round-submission",
    "/api/v1/audit/report": "audit-report",
}
READS = [
    "/api/v1/rounds/current",
    "/api/v1/rounds/7",
    "/api/v1/rounds/",
    "/api/v1/rounds/7/metrics",
    "/api/v1/rounds/7/mask-keys",
    "/api/v1/rounds/7/verdicts",
    "/api/v1/audit/events",
    "/api/v1/key-epochs/current",
    "/healthz",
    "/",
]


@pytest.fixture(scope="module")
def uploads_objects() -> list[dict[str, Any]]:
    return objects(PORTAL, copy.deepcopy(UPLOADS_VALUES))


def container(objs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    deployment = the(objs, "Deployment", f"-{component}")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main


def ingress_routes(ingress: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(path, pathType, Service) of the Ingress's one host, in order."""
    (rule,) = ingress["spec"]["rules"]
    return [
        (p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]
    ]


def nginx_backend(routes: list[tuple[str, str, str]], url: str) -> str:
    """The Service ingress-nginx picks for ``url`` under use-regex: the first regex, longest
    path first, that matches the start of the path, case-insensitively."""
    for path, _, service in sorted(routes, key=lambda r: -len(r[0])):
        if re.match(path, url, re.IGNORECASE):
            return service
    raise AssertionError(f"no route for {url}")


def test_the_uploads_pool_is_off_by_default_and_the_ingress_sends_everything_to_web():
    values = copy.deepcopy(UPLOADS_VALUES)
    del values["uploads"]
    objs = objects(PORTAL, values)
    assert not [o for o in objs if o["metadata"]["name"].endswith("-uploads")]
    ingress = the(objs, "Ingress")
    assert ingress_routes(ingress) == [("/", "Prefix", "rel-consortium-portal")]
    assert "nginx.ingress.kubernetes.io/use-regex" not in ingress["metadata"]["annotations"]


def test_the_uploads_pods_run_the_web_container_with_their_own_size_and_a_lower_priority(
    uploads_objects,
):
    web, uploads = container(uploads_objects, "web"), container(uploads_objects, "uploads")
    deployment = the(uploads_objects, "Deployment", "-uploads")
    assert deployment["spec"]["replicas"] == 2
    assert uploads["image"] == web["image"] and uploads["command"] == web["command"]
    assert "--timeout=300" in uploads["args"] and "--timeout=120" in web["args"]
    assert uploads["resources"]["requests"]["cpu"] == "100m"
    assert web["resources"]["requests"]["cpu"] == "250m"
    assert env_of(uploads)["CONSORTIUM_WEB_NICENESS"]["value"] == "12"
    assert "CONSORTIUM_WEB_NICENESS" not in env_of(web)
    assert uploads["volumeMounts"] == web["volumeMounts"]
    assert uploads["envFrom"] == web["envFrom"]


def test_each_service_selects_only_its_own_pods(uploads_objects):
    for component, suffix in [("web", "-portal"), ("uploads", "-uploads")]:
        service = the(uploads_objects, "Service", suffix)
        pods = the(uploads_objects, "Deployment", f"-{component}")["spec"]["template"]
        selector = service["spec"]["selector"]
        assert selector["app.kubernetes.io/component"] == component
        assert selector.items() <= pods["metadata"]["labels"].items()


def test_the_ingress_sends_the_bulk_paths_to_the_uploads_service_before_the_rest(
    uploads_objects,
):
    ingress = the(uploads_objects, "Ingress")
    routes = ingress_routes(ingress)
    assert [service for _, _, service in routes] == ["rel-consortium-portal-uploads"] * 4 + [
        "rel-consortium-portal"
    ]
    assert {kind for _, kind, _ in routes[:4]} == {"ImplementationSpecific"}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "300m"


@pytest.mark.parametrize("url", sorted(BULK))
def test_every_bulk_request_of_the_api_reaches_the_uploads_pods(uploads_objects, url):
    routes = ingress_routes(the(uploads_objects, "Ingress"))
    assert resolve(url).url_name == BULK[url]
    assert nginx_backend(routes, url) == "rel-consortium-portal-uploads"


@pytest.mark.parametrize("url", READS)
def test_status_polls_and_other_reads_reach_the_web_pods(uploads_objects, url):
    routes = ingress_routes(the(uploads_objects, "Ingress"))
    assert nginx_backend(routes, url) == "rel-consortium-portal"


def test_another_controller_gets_its_own_paths_and_no_nginx_annotation():
    values = copy.deepcopy(UPLOADS_VALUES)
    values["ingress"]["className"] = "traefik"
    values["uploads"]["nginxUseRegex"] = False
    values["uploads"]["paths"] = [{"path": "/api/v1/bulk", "pathType": "Prefix"}]
    ingress = the(objects(PORTAL, values), "Ingress")
    assert ingress_routes(ingress)[0] == ("/api/v1/bulk", "Prefix", "rel-consortium-portal-uploads")
    assert "nginx.ingress.kubernetes.io/use-regex" not in ingress["metadata"]["annotations"]


def test_a_use_regex_annotation_set_by_hand_wins_over_the_charts():
    values = copy.deepcopy(UPLOADS_VALUES)
    values["ingress"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] = "false"
    ingress = the(objects(PORTAL, values), "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "false"


def test_the_uploads_pods_keep_one_running_during_a_drain_when_there_are_several(
    uploads_objects,
):
    pdb = the(uploads_objects, "PodDisruptionBudget", "-uploads")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "uploads"
    one = copy.deepcopy(UPLOADS_VALUES)
    one["uploads"]["replicaCount"] = 1
    assert not [o for o in objects(PORTAL, one) if o["metadata"]["name"].endswith("-uploads")
                and o["kind"] == "PodDisruptionBudget"]  # fmt: skip


def test_the_network_policy_and_the_service_monitor_cover_the_uploads_pods(uploads_objects):
    values = copy.deepcopy(UPLOADS_VALUES)
    values["metrics"] = {"token": {"existingSecret": "m"}, "serviceMonitor": {"enabled": True}}
    objs = objects(PORTAL, values)
    labels = the(objs, "Deployment", "-uploads")["spec"]["template"]["metadata"]["labels"]
    policy = the(objs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    monitor = the(objs, "ServiceMonitor")["spec"]
    service = the(objs, "Service", "-uploads")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "http" in {p["name"] for p in service["spec"]["ports"]}
    assert "CONSORTIUM_METRICS_TOKEN_FILE" in env_of(container(objs, "uploads"))


def test_the_notes_name_the_uploads_pods_and_their_paths():
    with helm.Chart.load(PORTAL) as loaded:
        notes = loaded.render(copy.deepcopy(UPLOADS_VALUES), name="rel", namespace="consortium")
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "rel-consortium-portal-uploads (2 pods, gunicorn workers at nice 12)" in text
    assert "/api/v1/rounds/[0-9]+/update$" in text


def test_idle_niceness_reaches_the_uploads_workers_and_the_notes_say_so():
    values = copy.deepcopy(UPLOADS_VALUES)
    values["uploads"]["niceness"] = "idle"
    assert (
        env_of(container(objects(PORTAL, copy.deepcopy(values)), "uploads"))[
            "CONSORTIUM_WEB_NICENESS"
        ]["value"]
        == "idle"
    )
    with helm.Chart.load(PORTAL) as loaded:
        notes = loaded.render(values, name="rel", namespace="consortium")
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "(2 pods, gunicorn workers at idle priority, SCHED_IDLE)" in text


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"uploads": {"niceness": 20}}, "/uploads/niceness"),
        ({"uploads": {"niceness": -1}}, "/uploads/niceness"),
        ({"uploads": {"niceness": "lowest"}}, "/uploads/niceness"),
        ({"uploads": {"paths": []}}, "/uploads/paths"),
        ({"uploads": {"paths": [{"path": "api", "pathType": "Prefix"}]}}, "/uploads/paths/0"),
        ({"uploads": {"workers": 0}}, "/uploads/workers"),
        ({"uploads": {"replicas": 2}}, "replicas"),
    ],
    ids=[
        "nice-20",
        "nice-negative",
        "nice-word",
        "no-paths",
        "relative-path",
        "no-workers",
        "unknown-key",
    ],
)
def test_the_schema_rejects_a_bad_uploads_value(values, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        objects(PORTAL, copy.deepcopy(values))


def test_the_documented_default_paths_are_the_ones_the_tests_route():
    defaults = yaml.safe_load((PORTAL / "values.yaml").read_text())["uploads"]
    assert defaults["enabled"] is False
    assert len(defaults["paths"]) == len(BULK)

"""Alert rules pass promtool's checks and unit tests; rules and dashboards use only
metric names the portal and the node actually export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import bank_node.metrics
import consortium.metrics
from bank_node.drift_metrics import DriftCollector
from consortium.metrics.round_gauges import BlobStorageCollector
from consortium.rounds.models import RoundPolicy
from consortium.rounds.storage import blob_root

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
RULES = {
    "portal": ROOT / "helm" / "consortium-portal" / "files" / "prometheus-rules.yml",
    "bank-node": ROOT / "helm" / "bank-node" / "files" / "prometheus-rules.yml",
}
DASHBOARDS = [OPS / "grafana" / "portal.json", OPS / "grafana" / "bank-node.json"]


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("promtool is missing on CI; the prometheus package must be installed")
    pytest.skip("no promtool (apt-get install prometheus, or make system-deps)")


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULES.values()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_promtool_accepts_both_rule_files(promtool):
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, RULES.values())], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass(promtool):
    result = subprocess.run(
        [promtool, "test", "rules", str(OPS / "prometheus" / "alerts_test.yml")],
        capture_output=True,
        text=True,
        cwd=OPS / "prometheus",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not():
    cases = yaml.safe_load((OPS / "prometheus" / "alerts_test.yml").read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set()
    assert names - quiet == set()


def test_every_alert_has_a_severity_a_summary_and_a_description():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_alert_links_its_runbook_which_says_what_it_means_and_what_to_do():
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and url.endswith(f"/docs/runbooks/{rule['alert']}.md")
        page = (ROOT / "docs" / "runbooks" / f"{rule['alert']}.md").read_text()
        assert page.startswith(f"# {rule['alert']}\n"), rule["alert"]
        for heading in ("## What it means", "## What to check", "## What to do"):
            assert heading in page, (rule["alert"], heading)


def test_every_runbook_page_belongs_to_an_alert():
    pages = {p.stem for p in (ROOT / "docs" / "runbooks").glob("*.md")} - {"README"}
    assert pages == {rule["alert"] for rule in alert_rules()}


def test_the_ops_rule_files_are_links_to_the_charts_copies():
    links = {
        "portal": OPS / "prometheus" / "portal-alerts.yml",
        "bank-node": OPS / "prometheus" / "bank-node-alerts.yml",
    }
    for name, link in links.items():
        assert link.is_symlink() and link.resolve() == RULES[name].resolve()


# --- metric names ------------------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}


def metric_names(promql: str) -> set[str]:
    """Metric names in a PromQL expression: what remains after strings, label matchers,
    ranges, grouping clauses, functions and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    # Not after a digit ("5m"), a dot ("1.5e3") or "$" (a Grafana variable).
    for match in re.finditer(r"(?<![A-Za-z0-9_:$.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        token = match.group()
        if not rest.startswith("(") and token.lower() not in KEYWORDS:
            names.add(token)
    return names


def used_in_rules() -> set[str]:
    return {name for rule in alert_rules() for name in metric_names(rule["expr"])}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboards: panel targets and annotation queries."""
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            queries += [target["expr"] for target in panel.get("targets", [])]
        queries += [a["expr"] for a in board.get("annotations", {}).get("list", []) if "expr" in a]
    return queries


def used_in_dashboards() -> set[str]:
    return {name for query in dashboard_queries() for name in metric_names(query)}


# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$topn": "10", "$namespace": ".*", "$job": ".*"}


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    rules = []
    for number, query in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, query
        rules.append({"record": f"dashboard:query_{number}", "expr": query})
    assert len(rules) > 40
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def exported(open_round, client, tmp_path) -> set[str]:
    """Every sample name the portal (web, database collector, scheduler) and the node
    export, with a round in flight and a request served so that labelled series exist."""
    assert bank_node.metrics  # defines the node's metrics on import
    assert client.get("/healthz").status_code == 200
    blob_root()  # the blob gauges need the directory (a mounted volume in a pod)
    # A DP policy, so that the privacy budget gauge exists.
    RoundPolicy.objects.filter(pk=open_round.policy_id).update(dp_target_epsilon=8.0)
    families = [
        *REGISTRY.collect(),
        *consortium.metrics.DatabaseCollector().collect(),
        *BlobStorageCollector().collect(),
        # `bank-node run` registers it with the node's state dir; empty, it exports no samples.
        *DriftCollector(tmp_path).collect(),
    ]
    return {sample.name for family in families for sample in family.samples} | {
        family.name for family in families
    }


def test_the_metric_name_extractor_finds_names_and_skips_the_rest():
    expr = (
        'sum by (le, view) (rate(a_total{view=~"x|y"}[$__rate_interval])) / '
        "max without (pod) (b_seconds) > 0.5 and on (namespace) c offset 5m"
    )
    assert metric_names(expr) == {"a_total", "b_seconds", "c"}


def test_alert_rules_use_only_exported_metric_names(exported):
    assert used_in_rules() - exported == set()


def test_dashboards_use_only_exported_metric_names(exported):
    used = used_in_dashboards()
    assert {"consortium_http_requests_total", "bank_node_global_model_auprc"} <= used
    assert used - exported == set()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_importable_grafana_json(path):
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var in variables or var.startswith("__"), (panel["title"], var)


def test_every_exported_metric_and_every_alert_is_documented_in_the_ops_readme(exported):
    readme = (OPS / "README.md").read_text()
    ours = {
        name
        for name in exported
        if name.startswith(("consortium_", "bank_node_"))
        and not name.endswith(("_bucket", "_count", "_sum"))
    }
    # A counter's family name ("x") is exported as samples named "x_total".
    undocumented = {n for n in ours if f"`{n}`" not in readme and f"`{n}_total`" not in readme}
    assert ours and undocumented == set()
    assert {r["alert"] for r in alert_rules() if f"| {r['alert']} |" not in readme} == set()

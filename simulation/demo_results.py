"""What the demo prints after its rounds, and the per-bank commands that give the extra columns.

Every figure comes from a bank's own node: the federated one from the state each node kept
(the model it serves: the newest evaluated round its gate adopted), the local-only
baseline from ``bank-node baseline`` and the personalised model from ``bank-node
personalise`` (the served model fine-tuned on the bank's rows, the way of fine-tuning
chosen on its validation rows). Each bank runs its commands on its own data; the demo
only collects what they print.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from simulation.processes import PY, ROOT

NODE_CLI = (PY, "-m", "bank_node.cli")


def node_commands(nodes: list[Any], command: list[str]) -> dict[str, Any]:
    """``bank-node COMMAND --config C`` at every bank, two at a time (two cores); the JSON
    each prints on its last line, by bank."""
    results: dict[str, Any] = {}
    pending = list(nodes)
    while pending:
        batch, pending = pending[:2], pending[2:]
        running = [
            (slug, subprocess.Popen([*NODE_CLI, command[0], "--config", str(config),
                                     *command[1:]], cwd=ROOT, stdout=subprocess.PIPE))
            for slug, config, _ in batch
        ]  # fmt: skip
        for slug, proc in running:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"bank-node {command[0]} failed at {slug}; see its output")
            results[slug] = json.loads(out.decode().strip().splitlines()[-1])
    return results


def baseline_results(work: Path, nodes: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Local-only: each bank trains alone for as many epochs as the federation ran."""
    print("[demo] training local-only baselines for comparison")
    epochs = str(args.rounds * args.local_epochs)
    policy = str(work / "policy-snapshot.json")
    return node_commands(nodes, ["baseline", "--policy", policy, "--epochs", epochs])


def personalised_results(nodes: list[Any]) -> dict[str, Any]:
    """Each bank's served model fine-tuned on its own rows (``bank-node personalise``)."""
    print("[demo] each bank fine-tunes the federated model on its own rows (personalised)")
    return node_commands(nodes, ["personalise"])


def gate_words(rnd: dict[str, Any]) -> str:
    """A training round's gate in words: adopted, rejected, pending, or blank if ungated."""
    if rnd.get("candidate_round"):
        return f"gates round {rnd['candidate_round']}"
    if rnd.get("gate_round") is None:
        return ""
    return {"adopt": "adopted", "reject": "rejected"}.get(rnd.get("gate_decision") or "", "pending")


def served_round(state: dict[str, Any]) -> str:
    """The newest round whose model the node serves: evaluated and, if gated, adopted."""
    pending = set(state.get("gated", []))
    adopted = {k for k, v in state.get("verdicts", {}).items() if v.get("decision") == "adopt"}
    usable = [k for k in state["evaluated"] if k not in pending or k in adopted]
    return max(usable or state["evaluated"], key=int)


def _fmt(value: float | None) -> str:
    return "  n/a " if value is None else f"{value:6.3f}"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def report(
    work: Path,
    nodes: list[Any],
    rounds: list[dict[str, Any]],
    baselines: dict[str, Any],
    personal: dict[str, Any],
) -> None:
    """The rounds, then per bank: local-only, federated and personalised held-out figures."""
    print("\nRounds")
    print(f"{'round':>5}  {'kind':<10} {'state':<10} {'updates':>7}  {'aggregate bytes':>15}  gate")
    for rnd in sorted(rounds, key=lambda r: r["number"]):
        print(
            f"{rnd['number']:>5}  {rnd.get('kind', 'training'):<10} {rnd['state']:<10} "
            f"{rnd['submissions']:>7}  {rnd['aggregate_size'] or 0:>15,}  {gate_words(rnd)}"
        )
    finals = {}
    for slug, _, _ in nodes:
        state = json.loads((work / "banks" / slug / "state" / "state.json").read_text())
        finals[slug] = state["evaluated"][served_round(state)]
    print("\nHeld-out AUPRC per bank (its test period; by default the last 20% of its timeline)")
    for line in table(finals, baselines, personal, "auprc"):
        print(line)
    for key, title in [
        ("recall_at_0.5pct", "Recall at a 0.5% alert budget"),
        ("f1", "F1 at the threshold each bank chose on its validation split"),
    ]:
        if baselines or personal:
            print(f"\n{title}")
            for line in table(finals, baselines, personal, key):
                print(line)
    if personal:
        chosen = ", ".join(f"{slug} {p['choice']}" for slug, p in personal.items())
        print(f"\nPersonalised: each bank's fine-tuning, chosen on its validation rows: {chosen}")
    print(
        "\nFor the full comparison (centralised and plaintext-federated too, per typology): "
        "python benchmarks/quality.py --preset tiny"
    )
    (work / "results.json").write_text(json.dumps(
        {"rounds": rounds, "federated": finals, "baselines": baselines, "personalised": personal},
        indent=2, default=str))  # fmt: skip


def table(
    finals: dict[str, Any], baselines: dict[str, Any], personal: dict[str, Any], key: str
) -> list[str]:
    """One figure per bank and column (local-only and personalised when computed), the
    mean over banks, and federated over local-only for AUPRC."""
    columns: list[tuple[str, dict[str, Any]]] = [("federated", finals)]
    if baselines:
        columns.insert(0, ("local-only", baselines))
    if personal:
        columns.append(("personalised", {s: p["personalised"] for s, p in personal.items()}))
    auprc = key == "auprc"
    gain = auprc and bool(baselines)
    lines = [f"{'bank':<10}" + (f" {'base rate':>9}" if auprc else "")
             + "".join(f" {name:>12}" for name, _ in columns)
             + (f" {'gain':>7}" if gain else "")]  # fmt: skip
    for slug, final in finals.items():
        values = [source.get(slug, {}).get(key) for _, source in columns]
        lines.append(f"{slug:<10}" + (f" {final['base_rate']:>9.4f}" if auprc else "")
                     + "".join(f" {_fmt(v):>12}" for v in values)
                     + (f" {_ratio(final.get(key), baselines[slug].get(key))}"
                        if gain else ""))  # fmt: skip
    means = [_mean([source.get(s, {}).get(key) for s in finals]) for _, source in columns]
    fed, loc = _mean([f.get(key) for f in finals.values()]), means[0] if baselines else None
    lines.append(f"{'mean':<10}" + (f" {'':>9}" if auprc else "")
                 + "".join(f" {_fmt(m):>12}" for m in means)
                 + (f" {_ratio(fed, loc)}" if gain else ""))  # fmt: skip
    return lines


def _ratio(top: float | None, bottom: float | None) -> str:
    return f"{top / bottom:6.2f}x" if top and bottom else "   n/a "

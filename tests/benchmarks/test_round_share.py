"""benchmarks/round_share.py at tiny sizes: its figures, its share and its demo policy."""

from __future__ import annotations

import ast
import itertools
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo_defaults() -> dict[str, Any]:
    """The defaults of the demo's policy flags, read from simulation/demo_policy.py's source."""
    tree = ast.parse((ROOT / "simulation" / "demo_policy.py").read_text())
    defaults: dict[str, Any] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        flag = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else ""
        for keyword in node.keywords:
            if keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                defaults[str(flag).lstrip("-").replace("-", "_")] = keyword.value.value
    return defaults


def test_the_benchmark_times_the_demos_policy(round_share: ModuleType) -> None:
    demo = _demo_defaults()
    hyper = round_share.DEMO_HYPER
    assert json.loads(demo["model_spec"]) == hyper["model_spec"]
    for key in ("local_epochs", "batch_size", "learning_rate", "fedprox_mu"):
        assert demo[key] == hyper[key], key
    policy = round_share.demo_policy()
    assert policy.masked and policy.normalize_features and not policy.dp_enabled


@pytest.mark.parametrize(
    ("t_enc", "t_train", "share"),
    [(1.0, 19.0, 0.05), (3.0, 1.0, 0.75), (0.0, 2.0, 0.0), (2.0, 0.0, 1.0)],
)
def test_the_share_is_encryption_time_over_training_plus_encryption(
    round_share: ModuleType, t_enc: float, t_train: float, share: float
) -> None:
    assert round_share.encryption_share(t_enc, t_train) == pytest.approx(share)


@pytest.mark.parametrize(("t_enc", "t_train"), [(0.0, 0.0), (-1.0, 2.0), (1.0, -2.0)])
def test_the_share_refuses_timings_that_define_no_round(
    round_share: ModuleType, t_enc: float, t_train: float
) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        round_share.encryption_share(t_enc, t_train)


def test_a_tiny_run_gives_positive_figures_and_shares_as_defined(
    round_share: ModuleType, tmp_path: Path
) -> None:
    policy = round_share.demo_policy()
    data = round_share.bank_data(tmp_path / "world", "tiny", 0, "4")
    t_train = round_share.time_training(data, policy, repeats=1)
    crypto = round_share.crypto_setup(peers=2)
    sizes = [("small", 5000), ("model", policy.vector_length)]
    results = round_share.measure_sizes(crypto, t_train, sizes, repeats=1)

    assert [(r.label, r.values) for r in results] == sizes
    assert len(crypto.terms) == 3  # two pair masks and the self-mask
    for r, clock in itertools.product(results, round_share.CLOCKS):
        train, v2, v1 = r.t_train.on(clock), r.t_enc_v2.on(clock), r.t_enc_v1.on(clock)
        mask, pre = r.t_mask.on(clock), r.t_enc_v2_pre.on(clock)
        assert min(train, v2, v1, mask, pre) > 0
        assert train == t_train.on(clock)
        assert r.share_v2(clock) == pytest.approx(v2 / (train + v2))
        assert r.share_v2_pre(clock) == pytest.approx(pre / (train + pre))
        assert r.share_v1(clock) == pytest.approx(v1 / (train + v1))
    beside = round_share.time_training_beside_masks(data, policy, crypto, 5000, repeats=1)
    assert beside.wall > 0 and beside.cpu > 0
    line = round_share.overlap_line(t_train, beside, 5000)
    assert line.startswith("training with the masks of 5,000 values computing on a thread: ")


def test_the_overlap_line_says_how_much_longer_training_took_beside_the_masks(
    round_share: ModuleType,
) -> None:
    timing = round_share.Timing
    line = round_share.overlap_line(timing(wall=2.0, cpu=2.0), timing(wall=2.5, cpu=2.6), 10)
    assert line.endswith("2.500s wall against 2.000s alone (+25.0%); CPU of both threads 2.600s")


def test_the_masks_it_times_are_the_ones_encryption_adds(round_share: ModuleType) -> None:
    crypto = round_share.crypto_setup(peers=2)
    _timing, masks = round_share.time_masks(crypto, 5000, repeats=2)
    assert masks.length == 5000 and masks.chunks == 2
    inline = round_share.masker_for(crypto.kit, crypto.terms, crypto.binding)
    for chunk in range(2):
        assert (masks(chunk) == inline(chunk)).all()


def test_a_timing_is_the_median_of_its_runs_on_each_clock(
    round_share: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three runs taking 3, 1 and 2 s of wall time and 0.5, 0.1 and 0.3 s of CPU.
    walls = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    cpus = iter([0.0, 0.5, 1.0, 1.1, 2.0, 2.3])
    clocks = SimpleNamespace(perf_counter=walls.__next__, process_time=cpus.__next__)
    # median_timing lives in the script's helper module, round_share_common.
    monkeypatch.setattr(sys.modules[round_share.median_timing.__module__], "time", clocks)
    runs: list[int] = []
    timing = round_share.median_timing(lambda: runs.append(1), repeats=3)
    assert len(runs) == 3
    assert timing.wall == pytest.approx(2.0) and timing.on("wall") == timing.wall
    assert timing.cpu == pytest.approx(0.3) and timing.on("cpu") == timing.cpu


@pytest.mark.parametrize(("t_pre", "verdict"), [(0.5, "(met)"), (2.0, "(MISSED)")])
def test_the_report_says_whether_the_target_is_met_at_a_million_values(
    round_share: ModuleType, t_pre: float, verdict: str
) -> None:
    timing = round_share.Timing
    wall_slow = timing(wall=t_pre * 10, cpu=t_pre)  # the wall clock misses it either way
    inline = timing(wall=30.0, cpu=3.0)  # masks derived while encrypting: missed on both
    result = round_share.SizeResult(
        "1M", 1_000_000, timing(10.0, 10.0), inline, timing(1, 1), timing(1, 1), wall_slow
    )
    lines = round_share.report_lines([result], peers=19)
    targets = [line.strip() for line in lines if "target" in line]
    prefix = "share v2 <= 5% at 1,000,000 values: masks precomputed"
    assert targets == [
        f"target (cpu): {prefix} {t_pre / (10 + t_pre):.2%} {verdict}, "
        "masks inline 23.08% (MISSED)",
        f"target (wall): {prefix} {t_pre / (1 + t_pre):.2%} (MISSED), masks inline 75.00% (MISSED)",
    ]


def test_a_row_shows_every_timing_and_share(round_share: ModuleType) -> None:
    timing = round_share.Timing
    result = round_share.SizeResult(
        "1M",
        1_000_000,
        timing(1, 3.0),
        timing(1, 1.0),
        timing(1, 2.0),
        timing(1, 0.5),
        timing(1, 0.25),
    )
    row = round_share.row_line(result, "cpu").split()
    assert row[2:] == [
        "3.000s",
        "0.500s",
        "1.000s",
        "0.250s",
        "2.000s",
        "25.00%",
        "7.69%",
        "40.00%",
    ]


def test_a_model_spec_that_is_not_a_json_object_is_refused_with_a_message(
    round_share: ModuleType,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        round_share.parse_args(["--model-spec", "[1, 2]"])
    assert "must be a JSON object" in capsys.readouterr().err


def test_the_workers_time_only_updates_the_node_gives_them_and_count_their_cpu(
    round_share: ModuleType,
) -> None:
    crypto = round_share.crypto_setup(peers=2)
    t_train = round_share.Timing(wall=1.0, cpu=1.0)
    small = round_share.POOL_MIN_VALUES - 1
    sizes = [("small", small), ("pooled", round_share.POOL_MIN_VALUES)]
    [result] = round_share.measure_workers(crypto, t_train, sizes, repeats=1, workers=2)
    assert (result.label, result.values) == ("pooled", round_share.POOL_MIN_VALUES)
    # The critical path is the node's CPU plus one worker's: below what all processes spent.
    assert 0 < result.t_enc.cpu < result.cpu_total and result.t_enc.wall > 0
    assert result.share("cpu") == pytest.approx(result.t_enc.cpu / (1.0 + result.t_enc.cpu))


@pytest.mark.parametrize(("t_enc", "verdict"), [(0.5, "(met)"), (2.0, "(MISSED)")])
def test_the_workers_report_says_whether_the_target_is_met(
    round_share: ModuleType, t_enc: float, verdict: str
) -> None:
    timing = round_share.Timing
    workers = sys.modules[round_share.worker_lines.__module__]  # round_share_workers
    result = workers.WorkerResult(
        "1M", 1_000_000, timing(10.0, 10.0), timing(wall=t_enc * 10, cpu=t_enc), 3 * t_enc
    )
    lines = round_share.worker_lines([result], workers=2)
    row = next(line for line in lines if line.strip().startswith("1M"))
    assert row.split()[2:5] == ["10.000s", f"{t_enc:.3f}s", f"{3 * t_enc:.3f}s"]
    targets = [line.strip() for line in lines if "target" in line]
    prefix = "share v2 <= 5% at 1,000,000 values: 2 workers"
    wall_verdict = "(met)" if t_enc * 10 / (10 + t_enc * 10) <= 0.05 else "(MISSED)"
    assert targets == [
        f"target (cpu): {prefix} {t_enc / (10 + t_enc):.2%} {verdict}",
        f"target (wall): {prefix} {t_enc * 10 / (10 + t_enc * 10):.2%} {wall_verdict}",
    ]


def test_the_workers_overlap_line_says_how_much_longer_training_took(
    round_share: ModuleType,
) -> None:
    timing = round_share.Timing
    line = round_share.workers_overlap_line(timing(2.0, 2.0), timing(2.2, 2.1), 10, 2)
    assert line == (
        "training while 2 workers start and compute the masks of 10 values, until they are "
        "ready: 2.200s wall against 2.000s alone (+10.0%); CPU of this process 2.100s"
    )


def test_the_rest_of_the_round_checks_and_decrypts_a_real_aggregate_whose_masks_cancel(
    round_share: ModuleType, tmp_path: Path
) -> None:
    policy = round_share.demo_policy()
    data = round_share.bank_data(tmp_path / "world", "tiny", 0, "4")
    crypto = round_share.crypto_setup(peers=2)
    rest_module = sys.modules[round_share.time_rest.__module__]  # round_share_rest
    rest = round_share.time_rest(crypto, data, policy, 5000, banks=3, repeats=1)
    assert (rest.values, rest.banks) == (5000, 3)
    for clock in round_share.CLOCKS:
        parts = (rest.t_check.on(clock), rest.t_decrypt.on(clock), rest.t_eval.on(clock))
        assert min(parts) > 0
        assert rest.total(clock) == pytest.approx(sum(parts))
    # It refuses to time garbage: with one self-mask left unrevealed the sum does not cancel.
    reveal = rest_module.revealed_self_masks
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rest_module, "revealed_self_masks", lambda terms: reveal(terms)[1:])
        with pytest.raises(RuntimeError, match="masks did not cancel"):
            round_share.time_rest(crypto, data, policy, 5000, banks=3, repeats=1)


@pytest.mark.parametrize(
    ("t_enc", "t_train", "rest", "share"), [(1.0, 3.0, 1.0, 0.2), (0.0, 1.0, 0.0, 0.0)]
)
def test_the_whole_round_share_counts_the_rest_of_the_round(
    round_share: ModuleType, t_enc: float, t_train: float, rest: float, share: float
) -> None:
    rest_module = sys.modules[round_share.time_rest.__module__]
    assert rest_module.whole_round_share(t_enc, t_train, rest) == pytest.approx(share)
    with pytest.raises(ValueError):
        rest_module.whole_round_share(-1.0, t_train, rest)


def test_the_rest_lines_give_each_encryptions_share_of_the_whole_round(
    round_share: ModuleType,
) -> None:
    timing = round_share.Timing
    rest_module = sys.modules[round_share.time_rest.__module__]
    rest = rest_module.RestResult(
        1_000_000, 20, timing(2.0, 1.0), timing(0.4, 0.2), timing(0.2, 0.1)
    )
    lines = rest_module.rest_lines(rest, timing(4.0, 2.5), {"pre": timing(0.4, 0.2)})
    cpu = next(line for line in lines if line.strip().startswith("cpu")).split()
    # cpu: 0.2 / (2.5 + 0.2 + 1.0 + 0.2 + 0.1) = 5.00%
    assert cpu[1:] == ["1.000s", "0.200s", "0.100s", "2.500s", "5.00%"]

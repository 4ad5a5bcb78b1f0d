"""Several bank-node processes train together through a live portal over real HTTP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bank_node.counts import training_count_unit
from bank_node.keys import (
    INTEGRITY_KEY,
    PARAMS,
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    ckks_keygen,
)
from bank_node.portal_client import BankClient, OperatorClient
from he.codec import STATS_COUNT_UNIT, unpack_aggregate
from he.integrity import check_aggregate
from he.keys import fingerprint, load_public_context, load_secret_context, public_context_bytes
from he.params import CkksParams
from he.ring import kit_from_tenseal
from he.seeded import decrypt_vector2
from simulation import ceremony
from simulation.world import generate_world
from tests.e2e.conftest import ROOT, LivePortal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
NODE_RUN = (sys.executable, "-m", "bank_node.cli", "run")

ROUNDS = 2


@pytest.fixture(scope="module")
def federation(live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("federation")
    generate_world(work / "data", n_banks=3, preset="tiny", seed=11)
    params = CkksParams()
    epoch_fingerprint = ckks_keygen(work / "ceremony", params)
    op = OperatorClient(live_portal.url, "operator", live_portal.operator_password)
    op.key_epoch_register(
        base64.b64encode((work / "ceremony" / PUBLIC_CONTEXT).read_bytes()).decode(),
        params.to_dict(),
    )
    policy = op.policy_create(
        name="e2e",
        active=False,  # active once the banks have approved it in the charter
        min_banks=3,
        local_epochs=1,
        batch_size=512,
        learning_rate=3e-3,
        max_rounds=ROUNDS,
        deadline_seconds=600,
        ckks_params=params.to_dict(),
    )
    banks: dict[str, Path] = {}
    founders, configs = [], []
    for csv in sorted((work / "data").glob("bank_*.csv")):
        slug = csv.stem.replace("_", "-")
        bank = ceremony.bank_prepare(work / slug, work / "ceremony", op)
        home = bank.home
        config = home / "node.toml"
        config.write_text(
            f'portal_url = "{live_portal.url}"\nbank = "{slug}"\ncredential_file = "credential"\n'
            f'signing_key_file = "signing.key"\nsecret_context_file = "{SECRET_CONTEXT}"\n'
            f'ckks_params_file = "{PARAMS}"\ndata_file = "{csv}"\nstate_dir = "state"\n'
            "poll_interval_seconds = 0.5\nkeep_plaintext_updates = true\n"
            f'genesis_file = "{ceremony.GENESIS_FILE}"\nreport_metrics = true\n'
        )
        subprocess.run(
            [sys.executable, "-m", "bank_node.cli", "register", "--config", str(config)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        banks[slug] = home
        founders.append(bank)
        configs.append(config)
    # The founding ceremony: every bank signs the charter with its own key; nodes pin it.
    draft = ceremony.draft_genesis(
        "e2e-consortium",
        founders,
        key_epoch=epoch_fingerprint,
        policies=[ceremony.approval_of(policy)],
    )
    genesis = ceremony.found(live_portal.url, op, founders, draft)
    for bank in founders:
        ceremony.write_genesis(genesis, bank.home / ceremony.GENESIS_FILE)
    op.policy_activate(policy["id"])
    procs = [
        subprocess.Popen(
            [*NODE_RUN, "--config", str(config), "--max-rounds", str(ROUNDS)],
            cwd=ROOT,
            stdout=open(config.parent / "node.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for config in configs
    ]
    for proc in procs:
        assert proc.wait(timeout=800) == 0, [
            (h / "node.log").read_text()[-3000:] for h in banks.values()
        ]
    return {"work": work, "banks": banks, "op": op, "portal": live_portal}


def test_a_statistics_round_then_every_training_round_is_published_with_all_three_banks(
    federation,
):
    rounds = sorted(federation["op"].rounds(), key=lambda r: r.number)
    published = [r for r in rounds if r.state == "published"]
    assert [r.kind for r in published] == ["statistics"] + ["training"] * ROUNDS
    for rnd in published:
        assert rnd.manifest is not None
        assert sorted(rnd.manifest.banks) == sorted(federation["banks"])
    stats, first, second = published[0], published[1], published[2]
    assert first.base_round is None and second.base_round == first.number
    assert first.stats_round == second.stats_round == stats.number


def test_the_statistics_round_gives_every_bank_the_same_pooled_normalisation(federation):
    from bank_node.training import Normalizer, feature_moments, local_data

    banks = federation["banks"]
    norms = [
        Normalizer.from_json(next((h / "state").glob("normalization-round-*.json")).read_text())
        for h in banks.values()
    ]
    for norm in norms[1:]:
        assert np.array_equal(norm.mean, norms[0].mean) and np.array_equal(norm.std, norms[0].std)
    # The pooled moments, computed here from every bank's raw data (which no party of the
    # protocol ever sees), match what the encrypted sum gave each bank.
    work = federation["work"]
    parts = [feature_moments(local_data(csv)) for csv in sorted((work / "data").glob("bank_*.csv"))]
    total = sum(n for _, n in parts)
    pooled = sum(m * n for m, n in parts) / total
    expected = Normalizer.from_moments(np.asarray(pooled), norms[0].round_number)
    assert np.max(np.abs(norms[0].mean - expected.mean)) < 1e-6
    assert np.max(np.abs(norms[0].std - expected.std)) < 1e-5


def test_the_portal_holds_only_v2_ciphertexts_of_updates_and_aggregates(federation):
    # The policy left secure_aggregation at its default: every round ran v2.
    blobs = [p for p in federation["portal"].var_dir.rglob("*.ckks")]
    assert len(blobs) >= 3 * (ROUNDS + 1)
    for path in blobs:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"CKKSVEC2"
    for rnd in federation["op"].rounds():
        if rnd.state == "published":
            assert rnd.policy.secure_aggregation == "v2"
            assert rnd.manifest is not None and rnd.manifest.secure_aggregation is not None


def test_a_bank_scores_a_csv_with_the_global_model(federation):
    home = next(iter(federation["banks"].values()))
    csv = sorted((federation["work"] / "data").glob("bank_*.csv"))[0]
    out = federation["work"] / "scores.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bank_node.cli",
            "score",
            "--config",
            str(home / "node.toml"),
            "--input",
            str(csv),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "line,score,alert,model_version,reasons"
    version = json.loads(result.stdout.strip().splitlines()[-1])["model_version"]
    assert version.startswith("round-") and {line.split(",")[3] for line in lines[1:]} == {version}
    assert len(lines) - 1 == len(csv.read_text().splitlines()) - 1
    scores = [float(line.split(",")[1]) for line in lines[1:]]
    assert all(0.0 <= v <= 1.0 for v in scores) and len(set(scores)) > 10


def test_the_decrypted_aggregate_equals_plaintext_fedavg_within_1e_6(federation):
    """Masked, seeded, packed uploads through the live portal: the published sum is exact.

    Every bank's upload decrypts to uniform noise (its masks); the aggregate, where the
    masks cancel modulo q, decrypts to the plain FedAvg within 1e-6. Σn is in the thousands
    here; below about 20 rows in total the count slot's CKKS error (≈1e-7 absolute) is no
    longer small against 1/Σn (the floor is stated in docs/secure-aggregation.md).
    """
    work, banks = federation["work"], federation["banks"]
    secret = load_secret_context((work / "ceremony" / SECRET_CONTEXT).read_bytes())
    kit = kit_from_tenseal(secret, CkksParams())
    key = (work / "ceremony" / INTEGRITY_KEY).read_bytes()
    fp = fingerprint(public_context_bytes(secret))
    any_bank = next(iter(banks.values()))
    client = BankClient(federation["portal"].url, (any_bank / "credential").read_text())
    stats_rows = None
    for number in range(1, ROUNDS + 2):  # the statistics round and every training round
        client.download_aggregate(number, work / f"agg-{number}.ckks")
        with open(work / f"agg-{number}.ckks", "rb") as stream:
            decrypted = decrypt_vector2(kit, stream)
        info = client.round(number)
        # Counts in units: the protocol's for the statistics round, derived from its total
        # for the training rounds (1 for a world this small).
        unit = training_count_unit(stats_rows) if info.is_training else STATS_COUNT_UNIT
        avg, total = unpack_aggregate(decrypted, unit)
        plains = [np.load(home / "state" / f"plain-round-{number}.npy") for home in banks.values()]
        summed = np.sum(plains, axis=0)
        expected = summed[:-2] / summed[-2]  # [(n/u) w..., n/u, tag]
        assert total == round(summed[-2] * unit)
        assert np.max(np.abs(avg - expected)) < 1e-6
        # The live aggregate passes the members' integrity check for its own manifest.
        manifest = info.manifest
        assert manifest is not None and len(manifest.banks) == len(banks)
        checked, rows = check_aggregate(decrypted, manifest.banks, key, fp, number, unit)
        assert np.max(np.abs(checked - expected)) < 1e-6 and rows == total
        stats_rows = stats_rows if info.is_training else rows


def test_every_bank_evaluated_the_global_model_and_reported_metrics(federation):
    for home in federation["banks"].values():
        state = json.loads((home / "state" / "state.json").read_text())
        assert len(state["evaluated"]) == ROUNDS
        last = state["evaluated"][str(ROUNDS)]
        assert last["auprc"] is not None and last["auprc"] > last["base_rate"]


def test_no_secret_key_material_reaches_the_portals_database_or_blobs(federation):
    work, portal = federation["work"], federation["portal"]
    secret_file = (work / "ceremony" / SECRET_CONTEXT).read_bytes()
    public_file = (work / "ceremony" / PUBLIC_CONTEXT).read_bytes()
    # Bytes that are in the secret context file but not in the public one: the secret key.
    marker = _secret_only_window(secret_file, public_file)
    stored = [p.read_bytes() for p in portal.var_dir.rglob("*") if p.is_file()]
    stored += _database_bytes(portal)
    assert stored, "nothing to scan"
    assert not any(marker in blob for blob in stored)
    integrity = (work / "ceremony" / INTEGRITY_KEY).read_bytes()
    for form in (integrity, integrity.hex().encode(), base64.b64encode(integrity)):
        assert not any(form in blob for blob in stored)
    for blob in _key_epoch_contexts(portal):
        assert not load_public_context(blob).is_private()


def _secret_only_window(secret: bytes, public: bytes, width: int = 48) -> bytes:
    for start in range(len(secret) // 2, len(secret) - width, 97):
        window = secret[start : start + width]
        if window not in public:
            return window
    raise AssertionError("could not find secret-only bytes")


def _key_epoch_contexts(portal: LivePortal) -> list[bytes]:
    if portal.database_url:
        import psycopg2

        with psycopg2.connect(portal.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT public_context FROM rounds_keyepoch")
            return [bytes(row[0]) for row in cur.fetchall()]
    import sqlite3

    with sqlite3.connect(portal.var_dir / "portal.sqlite3") as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT public_context FROM rounds_keyepoch")]


def _database_bytes(portal: LivePortal) -> list[bytes]:
    if not portal.database_url:
        return []  # the SQLite file is under var_dir and already scanned
    import psycopg2

    out: list[bytes] = []
    with psycopg2.connect(portal.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT * FROM "{table}"')
            for row in cur.fetchall():
                for value in row:
                    if isinstance(value, memoryview | bytes):
                        out.append(bytes(value))
                    elif value is not None:
                        out.append(str(value).encode())
    return out

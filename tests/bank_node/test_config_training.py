"""The [training] table of the node config: in memory or streamed, and Lightning's devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from bank_node.config import ConfigError, load_config
from bank_node.config_training import TRAINING_READERS, TrainingConfig

BASE = (
    'portal_url = "http://127.0.0.1:9"\nbank = "alpha"\ncredential_file = "c"\n'
    'signing_key_file = "s"\nsecret_context_file = "x"\nckks_params_file = "p"\n'
    'data_file = "d.csv"\nstate_dir = "state"\n'
)


def _load(tmp_path: Path, training: str) -> TrainingConfig:
    path = tmp_path / "node.toml"
    path.write_text(BASE + "\n[training]\n" + training)
    return load_config(path).training


def test_without_a_training_table_the_node_trains_in_memory_in_one_process(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text(BASE)
    training = load_config(path).training
    assert not training.streams
    assert training.trainer_kwargs() == {
        "accelerator": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto",
    }  # fmt: skip


def test_a_streaming_ddp_table_is_read_with_its_work_dir_relative_to_the_file(tmp_path: Path):
    training = _load(
        tmp_path,
        'data = "stream"\nstrategy = "ddp_spawn"\ndevices = 2\naccelerator = "cpu"\n'
        'buffer_rows = 5000\nmemory_limit = "512MB"\nwork_dir = "work"\n',
    )
    assert training.streams and training.buffer_rows == 5000
    assert training.work_dir == tmp_path / "work" and training.memory_limit == "512MB"
    assert training.trainer_kwargs()["devices"] == 2
    assert training.trainer_kwargs()["strategy"] == "ddp_spawn"


def test_several_machines_read_the_session_dir_and_join_timeout(tmp_path: Path):
    training = _load(
        tmp_path,
        'data = "stream"\nstrategy = "ddp_spawn"\nnum_nodes = 3\nsession_dir = "shared/s"\n'
        "join_timeout_seconds = 45\n",
    )
    assert training.session_dir == tmp_path / "shared" / "s"
    assert training.join_timeout_seconds == 45.0 and training.num_nodes == 3
    assert _load(tmp_path, "").join_timeout_seconds == 600.0


def test_the_feature_engine_is_numpy_unless_the_table_names_duckdb(tmp_path: Path):
    assert _load(tmp_path, 'data = "stream"\n').engine == "numpy"
    assert _load(tmp_path, 'data = "stream"\nengine = "duckdb"\n').engine == "duckdb"


@pytest.mark.parametrize(
    ("lines", "words"),
    [('data = "disk"', 'training.data must be one of "memory", "stream"'),
     ('engine = "spark"', 'training.engine must be one of "duckdb", "numpy"'),
     ('strategy = "ddp"', 'training.strategy must be one of "auto", "ddp_spawn"'),
     ('accelerator = "tpu"', "training.accelerator must be one of"),
     ("devices = 0", "training.devices must be a whole number >= 1"),
     ('devices = "many"', "training.devices must be a whole number >= 1"),
     ("num_nodes = true", "training.num_nodes must be a whole number >= 1"),
     ("buffer_rows = -1", "training.buffer_rows must be a whole number >= 1"),
     ('memory_limit = "lots"', 'training.memory_limit must be a size like "2GB"'),
     ('data = "stream"\ndevices = 2', 'need strategy = "ddp_spawn"'),
     ('strategy = "ddp_spawn"\nnum_nodes = 2', 'several training processes need data = "stream"'),
     ('data = "stream"\nstrategy = "ddp_spawn"\nnum_nodes = 2', "num_nodes = 2 needs session_dir"),
     ("join_timeout_seconds = 0", "training.join_timeout_seconds must be a number of seconds > 0"),
     ("buffer = 5", "did you mean 'buffer_rows'?")],
)  # fmt: skip
def test_a_bad_training_value_is_named(tmp_path: Path, lines: str, words: str):
    with pytest.raises(ConfigError, match=words):
        _load(tmp_path, lines + "\n")


def test_every_training_field_has_a_reader():
    assert set(TRAINING_READERS) == set(TrainingConfig.__dataclass_fields__)

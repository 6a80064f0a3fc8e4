"""The run services called from Python, not through the CLI: `hwnas.search.services.spaces`,
`.database`, `.training` and `.recorded_runs` on the tiny space (real digits, real training)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import SHARED_CACHE, TINY

from hwnas.db import run_store
from hwnas.db.models import SCHEMA_VERSION, Checkpoint, EpochMetric
from hwnas.db.session import open_db
from hwnas.exceptions import HwnasError, shown
from hwnas.search.services import database, recorded_runs, spaces, training
from hwnas.search.services.recorded_runs import RunRecord, SubnetInfo
from hwnas.search.services.training import Job, Launch, TrainResult
from hwnas.supernet.space import SearchSpace, load_space
from hwnas.supernet.train_config import LaunchConfig, TrainConfig


def test_space_summary_is_typed_and_its_json_is_the_commands():
    summary = spaces.space_summary(TINY)
    space = load_space(TINY)
    assert summary.largest == space.largest() and summary.smallest_cost == space.cost(
        space.smallest()
    )
    out = summary.to_json()
    assert list(out) == ["space", "n_subnets", "encoding_size", "largest", "smallest",
                         "largest_cost", "smallest_cost", "choices"]  # fmt: skip
    assert out["largest"] == space.largest().to_dict()
    assert out["largest_cost"] == vars(space.cost(space.largest()))
    assert out["choices"] == {"depths": [1, 2], "kernels": [3, 5], "expands": [2, 3],
                              "resolutions": [8, 10], "widths": [8, 16]}  # fmt: skip


def test_space_presets_list_every_preset_with_its_cost_range():
    presets = spaces.space_presets()
    rows = {row.name: row for row in presets.presets}
    assert set(rows) == {"digits", "cifar", "ofa-mbv3", "ofa-mbv3-r25"}
    assert rows["ofa-mbv3"].resolutions == (128, 160, 192, 224)
    assert all(row.macs[0] < row.macs[1] for row in rows.values())
    assert presets.to_json()["presets"][0]["macs"] == list(presets.presets[0].macs)
    assert presets.text().splitlines()[0].startswith("name")


def test_db_init_then_status(db_url):
    created = database.db_init(db_url)
    assert isinstance(created, database.DbStatus)
    assert created.schema_version == created.expected_schema_version == SCHEMA_VERSION
    found = database.db_status(db_url)
    assert found.tables["hwnas_meta"] == 1 and found.to_json() == created.to_json()
    keys = ["url", "backend", "schema_version", "expected_schema_version", "tables"]
    assert list(found.to_json()) == [*keys, "other_tables"]


def test_db_status_of_a_missing_database_is_a_user_error(tmp_path):
    with pytest.raises(HwnasError, match="hwnas db init"):
        database.db_status(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("kwargs", "field", "line"),
    [
        ({"epochs": 0}, "epochs", "--epochs must be at least 1, got 0"),
        ({"batch_size": -1}, "batch_size", "--batch-size must be at least 1, got -1"),
        ({"launch": Launch(loader="fast")}, "loader", "unknown --loader 'fast'"),
        ({"launch": Launch(checkpoint_minutes=0)}, "checkpoint_minutes", "--checkpoint-minutes"),
        ({"launch": Launch(decode_workers=-1)}, "decode_workers", "--decode-workers must be"),
        ({"launch": Launch(num_processes=2)}, "coordinator", "--coordinator: a job of"),
    ],
)
def test_bad_input_names_its_field_and_writes_nothing(tmp_path, kwargs, field, line):
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    with pytest.raises(HwnasError) as caught:
        training.train(url, "digits", space_file=TINY, **kwargs)
    assert caught.value.field == field
    assert line in shown(caught.value, flags=True)
    assert "--" not in shown(caught.value, flags=False)  # Python callers see the field's name
    assert list(tmp_path.iterdir()) == []


def test_a_flag_wins_over_the_file_and_a_job_variable_over_the_file(monkeypatch):
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    file = {"runs_dir": "from-file", "loader": "memory", "checkpoint_minutes": 2.0}
    job = Job.settle(Launch(runs_dir=Path("given")), file)
    assert job.settings == LaunchConfig(runs_dir="given", loader="memory", checkpoint_minutes=2.0)
    file = {"coordinator": "h:1", "num_processes": 2, "process_id": 1}
    assert Job.settle(Launch(), file).cluster.process_id == 1
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    assert Job.settle(Launch(), file).cluster.process_id == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the tiny space, its checkpoint folder and two settings from a config file."""
    cwd = tmp_path_factory.mktemp("service")
    url = f"sqlite:///{cwd / 'hwnas.db'}"
    config = cwd / "train.toml"
    config.write_text(
        f'runs_dir = "{cwd / "elsewhere"}"\nbatch_size = 128\nlearning_rate = 0.01\n'
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWNAS_JAX_CACHE", os.environ.get(SHARED_CACHE, str(cwd / "jaxcache")))
        result = training.train(url, "digits", space_file=TINY, epochs=1, name="tiny",
                                progress=False, config_file=config)  # fmt: skip
    return cwd, url, result


def test_training_returns_a_typed_result_and_records_the_run(trained):
    cwd, url, result = trained
    assert isinstance(result, TrainResult) and result.run == "tiny"
    assert result.epochs == 1 and result.steps == 1257 // 128
    assert Path(result.checkpoint) == cwd / "elsewhere" / "tiny" / "supernet.ckpt"
    assert Path(result.checkpoint).exists()  # the config file's runs_dir took effect
    out = result.to_json()
    assert list(out)[:2] == ["run", "seconds"] and out["dataset"]["loader"] == "memory"
    with open_db(url, create=False) as db:
        record = recorded_runs.load_run_record(db, "tiny")
        with db.read() as s:
            epochs = s.query(EpochMetric).count()
            checkpoints = s.query(Checkpoint).count()
    assert isinstance(record, RunRecord) and record.row.status == "finished"
    assert record.config == TrainConfig(epochs=1, batch_size=128, learning_rate=0.01)
    assert isinstance(record.space, SearchSpace) and record.space.name == "tiny"
    assert record.checkpoint == result.checkpoint and epochs == 1 and checkpoints >= 1


def test_subnet_info_of_the_trained_run(trained):
    _, url, _ = trained
    info = recorded_runs.subnet_info(url, "tiny", None, 3)
    assert isinstance(info, SubnetInfo) and info.flops == 2 * info.macs > 0
    assert 0.0 <= info.val_acc <= 1.0
    again = recorded_runs.subnet_info(url, "tiny", info.subnet.to_json(), None)
    assert again == info
    assert list(info.to_json()) == ["subnet", "key", "params", "macs", "flops", "val_acc"]


def test_a_taken_name_and_an_unknown_run_are_user_errors(trained):
    _, url, _ = trained
    with pytest.raises(HwnasError) as caught:
        training.train(url, "digits", space_file=TINY, epochs=1, name="tiny", progress=False)
    assert caught.value.field == "resume" and "pass --resume" in shown(caught.value, True)
    with pytest.raises(HwnasError, match="no run named 'nope' in this database; runs here: tiny"):
        recorded_runs.subnet_info(url, "nope", None, 0)
    with pytest.raises(HwnasError, match="exactly one of subnet_json and random_seed"):
        recorded_runs.subnet_info(url, "tiny", None, None)
    with open_db(url, create=False) as db:
        assert run_store.run_names(db) == ["tiny"]

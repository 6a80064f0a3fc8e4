"""`hwnas train`'s surface: at most 12 options in `--help`; the expert settings are keys of the
`--config` file (docs/config.md), each also a hidden flag."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import TINY, hwnas

from hwnas.exceptions import HwnasError
from hwnas.supernet.train_config import LaunchConfig, TrainConfig, read_toml


def listed_options(help_text: str) -> list[str]:
    """The options `--help` shows, `--help` itself left out."""
    names = re.findall(r"^\s{2}(--[a-z][a-z-]*)", help_text, flags=re.MULTILINE)
    return [n for n in names if n != "--help"]


def test_help_lists_at_most_12_options_and_no_expert_flag(tmp_path):
    shown = listed_options(hwnas("train", "--help", cwd=tmp_path).stdout)
    assert len(shown) <= 12 and {"--db", "--json", "--config"} <= set(shown), shown
    for hidden in ("--runs-dir", "--loader", "--workers", "--checkpoint-minutes",
                   "--coordinator", "--num-processes", "--process-id"):  # fmt: skip
        assert hidden not in shown


def test_every_config_key_is_documented():
    doc = (Path(__file__).parents[3] / "docs" / "config.md").read_text()
    train = doc[doc.index("## hwnas train") :]
    for key in [*TrainConfig().to_dict(), *LaunchConfig().__dataclass_fields__]:
        assert f"| `{key}` |" in train, key


def test_the_file_is_split_and_checked(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('epochs = 3\nruns_dir = "r"\ndecode_workers = 0\ncheckpoint_minutes = 1\n')
    read = read_toml(path)
    assert read.train == {"epochs": 3}
    assert read.launch == {"runs_dir": "r", "decode_workers": 0, "checkpoint_minutes": 1.0}
    for bad, needle in [("bogus = 1", "unknown field 'bogus'"),
                        ("loader = 'fast'", "unknown loader 'fast'"),
                        ("checkpoint_minutes = 0", "checkpoint_minutes must be above 0"),
                        ("process_id = -1", "process_id must be at least 0"),
                        ("coordinator = 7", "coordinator must be a string")]:  # fmt: skip
        path.write_text(bad + "\n")
        with pytest.raises(HwnasError, match=needle):
            read_toml(path)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("bogus = 1\n", "unknown field 'bogus'"),
        ("loader = 'fast'\n", "unknown loader 'fast'"),
        ("decode_workers = 'x'\n", "decode_workers must be an integer"),
        ("epochs = \n", "training config"),
    ],
)
def test_a_bad_key_or_value_is_one_line_exit_2_and_nothing_written(tmp_path, text, needle):
    (tmp_path / "t.toml").write_text(text)
    done = hwnas("train", "--config", "t.toml", "--db", "sqlite:///x.db", cwd=tmp_path,
                 check=False)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], done.stderr
    assert lines[0].startswith("hwnas: error: training config t.toml: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


def test_the_files_runs_dir_takes_effect(tmp_path):
    (tmp_path / "t.toml").write_text('runs_dir = "elsewhere"\nbatch_size = 128\n')
    done = hwnas("train", "--space", TINY, "--epochs", "1", "--config", "t.toml", "--name", "r",
                 "--db", "sqlite:///hwnas.db", "--quiet", "--json", cwd=tmp_path)  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["checkpoint"]) == tmp_path / "elsewhere" / "r" / "supernet.ckpt"
    assert Path(out["checkpoint"]).exists() and not (tmp_path / "runs").exists()

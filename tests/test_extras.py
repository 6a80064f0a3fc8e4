"""The core without its extras: what runs, and the one line a command needing one says."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_helpers import cli_env, copy_db, search_args

from hwnas.extras import EXTRAS, MissingExtra, require

ROOT = Path(__file__).resolve().parent.parent
EVERY_EXTRA = sorted({m for modules in EXTRAS.values() for m in modules})

# `hwnas ARGS` in a process where no module of any extra can be imported, as after
# `pip install hwnas` with no extras (a module set to None in sys.modules fails to import)
RUN_BLOCKED = (
    "import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
    "from hwnas.search.cli import main; sys.exit(main(sys.argv[1:]))"
)


def hwnas_without_extras(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = RUN_BLOCKED.format(blocked=EVERY_EXTRA)
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=cli_env(cwd),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_the_core_dependencies_leave_the_extras_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for heavy in (
        "tensorflow",
        "streamlit",
        "psycopg",
        "plotly",
        "pandas",
        "matplotlib",
        "litert",
    ):
        assert heavy not in core
    extras = project["optional-dependencies"]
    assert {"export", "dashboard", "report", "postgres", "gpu"} <= set(extras)
    assert set(EXTRAS) <= set(extras)


def test_require_names_the_extra_and_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(MissingExtra) as e:
        require("dashboard", "hwnas dashboard")
    assert str(e.value) == (
        "hwnas dashboard needs hwnas's dashboard extra (plotly not installed); "
        "install it with: pip install 'hwnas[dashboard]'"
    )
    require("report", "hwnas report")  # installed here: nothing raised


# One process runs the four commands (a process's imports cost seconds): each `main(...)`
# call's exit status and stderr, as JSON lines on stdout.
RUN_EACH_BLOCKED = (
    "import contextlib, io, json, sys; sys.modules.update(dict.fromkeys({blocked!r}))\n"
    "from hwnas.search.cli import main\n"
    "for args in json.loads(sys.argv[1]):\n"
    "    err = io.StringIO()\n"
    "    with contextlib.redirect_stderr(err):\n"
    "        code = main(args)\n"
    "    print(json.dumps([code, err.getvalue()]))\n"
)
NEEDING_AN_EXTRA = [
    (["export", "--candidate", "1", "--out", "m.tflite"], "export"),
    (["dashboard"], "dashboard"),
    (["measure", "--run", "tiny", "--target", "tflite", "--n", "2"], "export"),
    (["search", "--run", "tiny", "--target", "tflite", "--db", "postgresql+psycopg://u@h/x"],
     "postgres"),
]  # fmt: skip


def test_a_command_needing_a_missing_extra_says_which_in_one_line(ready, tmp_path):
    url = copy_db(ready[1], tmp_path / "hwnas.db")
    before = sorted(p.name for p in tmp_path.iterdir())
    runs = [args + ([] if "--db" in args else ["--db", url]) for args, _ in NEEDING_AN_EXTRA]
    code = RUN_EACH_BLOCKED.format(blocked=EVERY_EXTRA)
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(runs)], cwd=tmp_path, env=cli_env(tmp_path),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.strip().splitlines()[-len(runs) :]]
    for (args, extra), (status, stderr) in zip(NEEDING_AN_EXTRA, results, strict=True):
        lines = stderr.strip().splitlines()
        assert status == 2, (args, stderr)
        assert len(lines) == 1 and f"pip install 'hwnas[{extra}]'" in lines[0], (args, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_the_core_searches_and_predicts_without_any_extra(ready, tmp_path):
    url = copy_db(ready[1], tmp_path / "hwnas.db")
    done = hwnas_without_extras(*search_args(url, "core", 6), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    front = json.loads(done.stdout.strip().splitlines()[-1])["pareto"]
    subnet = json.dumps(front[0]["subnet"])
    args = ["predict", "--run", "tiny", "--target", "tflite", "--subnet", subnet, "--db", url]
    done = hwnas_without_extras(*args, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["latency_ms"] > 0

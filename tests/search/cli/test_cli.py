from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from hwnas.db.models import SCHEMA_VERSION
from hwnas.search.cli import main


def run(capsys, *argv: str) -> tuple[int, dict | str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    try:
        return code, json.loads(lines[-1]), err
    except (IndexError, json.JSONDecodeError):
        return code, out, err


def test_space_json_has_the_contract_keys(capsys):
    code, result, err = run(capsys, "space", "--json")
    assert code == 0, err
    assert {"n_subnets", "largest", "smallest"} <= set(result)
    assert result["largest"]["resolution"] == 16 and len(result["largest"]["kernels"]) == 20


def test_space_presets_are_listed_and_load_by_name(capsys):
    code, result, err = run(capsys, "space", "--list", "--json")
    assert code == 0, err
    names = {row["name"]: row for row in result["presets"]}
    assert set(names) == {"digits", "cifar", "ofa-mbv3", "ofa-mbv3-r25"}
    assert names["ofa-mbv3"]["resolutions"] == [128, 160, 192, 224]
    code, result, err = run(capsys, "space", "--space", "ofa-mbv3", "--json")
    assert code == 0, err
    assert result["space"] == "ofa-mbv3" and result["largest"]["resolution"] == 224
    code, text, err = run(capsys, "space", "--list")
    assert code == 0 and "ofa-mbv3" in text.splitlines()[-1], err


def test_db_init_then_status(capsys, db_url):
    code, result, err = run(capsys, "db", "init", "--db", db_url, "--json")
    assert code == 0, err
    code, result, err = run(capsys, "db", "status", "--db", db_url, "--json")
    assert code == 0, err
    assert result["schema_version"] == SCHEMA_VERSION and result["tables"]["hwnas_meta"] == 1


def test_db_url_from_the_environment(capsys, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("HWNAS_DB", url)
    assert run(capsys, "db", "init", "--json")[0] == 0
    assert (tmp_path / "env.db").exists()


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwnas: error:"), err
    assert needle in lines[0]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["space", "--bogus"], "No such option"),
        (["space", "--space", "{tmp}/missing.json"], "does not exist"),
        (["space", "--space", "{tmp}/bad.json", "--db", "sqlite:///{tmp}/x.db"], "unknown space"),
        (["space", "--space", "nonsense"], "unknown space 'nonsense'"),
        (["train", "--space", "nonsense", "--db", "sqlite:///{tmp}/x.db"], "unknown space"),
        (["db", "status", "--db", "sqlite:///{tmp}/x.db"], "hwnas db init"),
        (["db", "init", "--db", "sqlite:///{tmp}/nodir/x.db"], "does not exist"),
        (["db", "init", "--db", "nonsense"], "not a database URL"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(capsys, tmp_path, argv, needle):
    (tmp_path / "bad.json").write_text('{"stagez": []}')
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert_one_line_error(code, err, needle)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_the_console_script_is_installed_and_runs(tmp_path):
    exe = shutil.which("hwnas") or os.path.join(os.path.dirname(sys.executable), "hwnas")
    if not os.path.exists(exe):
        pytest.fail("the hwnas console script is not installed: pip install -r requirements.txt")
    done = subprocess.run([exe, "space", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "n_subnets" in json.loads(done.stdout.strip().splitlines()[-1])
    bad = subprocess.run([exe, "db", "status"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "hwnas.db").exists()


def test_only_a_real_command_line_may_restart_for_host_memory(monkeypatch, capsys):
    from hwnas.supernet import host_memory

    monkeypatch.setattr(host_memory, "_command_line", None)
    assert main(["--help"]) == 0
    assert host_memory._command_line is None  # a call from Python is never restarted
    monkeypatch.setattr(sys, "argv", ["hwnas", "--help"])
    assert main() == 0
    assert host_memory._command_line == sys.orig_argv

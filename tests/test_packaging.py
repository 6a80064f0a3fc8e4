"""What `pip install .` puts into site-packages: one import name, `hwnas`, that works from a
folder holding packages of its own named like hwnas's folders (`db/`, `app/`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("hwnas", "search", "supernet", "latency", "db", "app", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (found,) = dist.glob("hwnas-*.whl")
    return found


def test_the_wheel_holds_one_import_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert z.read(top_level).decode().split() == ["hwnas"]
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "hwnas = hwnas.search.cli:main" in z.read(entry_points).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"hwnas"}
    for shipped in (
        "hwnas/search/services/search.py",
        "hwnas/supernet/spaces/digits.json",
        "hwnas/supernet/native/depthwise.cc",
        "hwnas/app/main.py",
        "hwnas/app/app_pages/pareto_page.py",
        "hwnas/latency/worker.py",
        "hwnas/db/migrations/env.py",
        "hwnas/db/migrations/versions/v7_accuracy_front.py",
    ):
        assert shipped in names


def test_installed_hwnas_works_beside_a_users_own_db_and_app(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    project = tmp_path / "project"  # a user's web project, run from its own folder
    for own in ("db", "app", "search", "latency", "supernet"):
        (project / own).mkdir(parents=True)
        (project / own / "__init__.py").write_text(f"raise ImportError('the user\\'s {own}')\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = (
        "import hwnas, hwnas.db.models, hwnas.app.view_data, hwnas.search.cli;"
        "print(hwnas.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site / "hwnas" / "__init__.py")
    done = subprocess.run(
        [sys.executable, "-m", "hwnas.search.cli", "space", "--json"], cwd=project, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["n_subnets"] > 0
    done = subprocess.run(  # a new database is stamped with the wheel's newest revision
        [sys.executable, "-m", "hwnas.search.cli", "db", "init", "--json"], cwd=project,
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["other_tables"]["hwnas_alembic_version"] == 1

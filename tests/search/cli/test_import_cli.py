"""Latencies measured elsewhere: `hwnas measure --import FILE --target NAME --space S`, then the
imported target like any other (`predictor fit`, `predict --subnets`, a search under its
budget, an export of that search's candidate). The file holds real LiteRT measurements of the
tiny run's subnets, taken here by `hwnas measure` and written out as another device would
hand them over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import KEY, TINY, hwnas, run_json, stored
from sqlalchemy import select

from hwnas.db.models import Measurement, Search
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import open_db

BOARD = "board-7"


def measured_rows(url: str) -> list[dict]:
    """The `ready` run's tflite measurements as measurement-file lines."""
    with open_db(url, create=False) as db, db.read() as s:
        rows = s.execute(
            select(Measurement.subnet, Measurement.median_ms, Measurement.iqr_ms)
            .join(TargetRow)
            .where(TargetRow.key == KEY, Measurement.kind == "subnet")
        ).all()
    return [{"subnet": sub, "latency_ms": ms, "spread": iqr} for sub, ms, iqr in rows]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def imported(ready):
    cwd, url = ready
    path = write(cwd / "board.jsonl", measured_rows(url))
    first = run_json("measure", "--import", str(path), "--target", BOARD, "--space", TINY,
                     "--db", url, cwd=cwd)  # fmt: skip
    return cwd, url, path, first


def count(url: str) -> int:
    return len(stored(url, Measurement))


def test_an_import_records_every_line_once(imported):
    cwd, url, path, first = imported
    n = len(path.read_text().splitlines())
    assert first["imported"] == n >= 20 and first["skipped"] == 0
    assert first["targets"] == [BOARD] and first["target"] == BOARD
    before = count(url)
    again = run_json("measure", "--import", str(path), "--target", BOARD, "--space", TINY,
                     "--db", url, cwd=cwd)  # fmt: skip
    assert again["imported"] == 0 and again["skipped"] == n
    assert count(url) == before
    rows = [m for m in stored(url, Measurement) if m.source.startswith("import:")]
    assert len(rows) == n and {m.weights for m in rows} == {"external"}


def bad_rows(path: Path) -> list:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    good = rows[0]
    return [
        ("{oops", "not JSON"),
        (good | {"subnet": good["subnet"] | {"resolution": 999}}, "not a subnet of space"),
        (good | {"latency_ms": 0}, "latency_ms must be a positive number"),
        (good | {"latency_ms": float("nan")}, "latency_ms must be a positive number"),
        ({"subnet": good["subnet"]}, "latency_ms is missing"),
        (good | {"batch": 4}, "batch 4 does not match target board-7 (batch 1)"),
    ]


@pytest.mark.parametrize("which", range(6))
def test_a_bad_line_stops_the_import_with_its_number(imported, tmp_path, which):
    cwd, url, path, _ = imported
    row, says = bad_rows(path)[which]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r | {"latency_ms": r["latency_ms"] * 1.5} for r in rows]  # new measurements
    bad = write(tmp_path / "bad.jsonl", [*rows[:4], row, *rows[4:]])
    before = count(url)
    done = hwnas("measure", "--import", str(bad), "--target", BOARD, "--space", TINY,
                 "--db", url, cwd=cwd, check=False)  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"{bad} line 5: {says}" in done.stderr and "Nothing was imported" in done.stderr
    assert count(url) == before


def test_a_bad_import_into_a_new_database_writes_nothing(imported, tmp_path):
    cwd, _, path, _ = imported
    bad = write(tmp_path / "bad.jsonl", [json.loads(path.read_text().splitlines()[0]), "[]"])
    db = tmp_path / "new.db"
    done = hwnas("measure", "--import", str(bad), "--target", BOARD, "--space", TINY,
                 "--db", f"sqlite:///{db}", cwd=cwd, check=False)  # fmt: skip
    assert done.returncode == 2 and "line 2: not a JSON object" in done.stderr
    assert not db.exists()


def test_the_imported_target_is_fitted_predicted_searched_and_exported(imported, tmp_path):
    cwd, url, path, _ = imported
    fit = run_json("predictor", "fit", "--target", BOARD, "--db", url, cwd=cwd)
    assert fit["target"] == BOARD and fit["holdout"]["n"] >= 4
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    subnets = write(tmp_path / "subnets.jsonl", [{"subnet": r["subnet"]} for r in rows])
    done = hwnas("predict", "--target", BOARD, "--subnets", str(subnets), "--db", url, cwd=cwd)
    many = [json.loads(line)["latency_ms"] for line in done.stdout.splitlines()]
    assert len(many) == len(rows)
    one = run_json("predict", "--target", BOARD, "--subnet", json.dumps(rows[3]["subnet"]),
                   "--db", url, cwd=cwd)  # fmt: skip
    assert many[3] == pytest.approx(one["latency_ms"], rel=1e-12)
    budget = sorted(many)[len(many) // 2]
    out = run_json("search", "--run", "tiny", "--target", BOARD, "--budget", f"{BOARD}={budget}",
                   "--trials", "12", "--name", "on-board", "--seed", "0", "--quiet", "--db", url,
                   cwd=cwd)  # fmt: skip
    assert out["pareto"] and all(p["latency_ms"][BOARD] <= budget for p in out["pareto"])
    assert [s.targets for s in stored(url, Search) if s.name == "on-board"] == [[BOARD]]
    pick = out["pareto"][0]
    exported = run_json("export", "--candidate", str(pick["candidate"]), "--out",
                        str(tmp_path / "m.tflite"), "--no-measure", "--db", url,
                        cwd=cwd)  # fmt: skip
    assert exported["predicted_ms_by_target"] == {BOARD: pytest.approx(pick["latency_ms"][BOARD])}
    assert exported["max_abs_diff"] < 1e-4


def test_an_imported_target_cannot_be_measured_here(imported):
    cwd, url, _, _ = imported
    done = hwnas("measure", "--run", "tiny", "--target", BOARD, "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2 and "import its measurements" in done.stderr

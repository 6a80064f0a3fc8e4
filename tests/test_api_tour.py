"""The Python API end to end, no CLI: docs/api_tour.py trains one epoch, measures 20 subnets
on tflite, fits the predictor, searches 50 trials under a budget and exports the best feasible
subnet, with `hwnas.*` calls and the frozen results they return. On a tiny space here."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

import hwnas

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "data" / "tiny_space.json")


def load_tour():
    spec = importlib.util.spec_from_file_location("api_tour", ROOT / "docs" / "api_tour.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tour_trains_measures_fits_searches_and_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exported = load_tour().tour(tmp_path / "tour", space=TINY)
    assert dataclasses.is_dataclass(exported) and isinstance(exported, hwnas.Result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exported.path = "elsewhere"  # type: ignore[misc]
    path = Path(exported.path)
    assert path.is_file() and path.stat().st_size == exported.proof.bytes
    assert exported.proof.precision == "int8"
    assert json.loads(json.dumps(exported.to_json()))["path"] == str(path)
    db = f"sqlite:///{tmp_path / 'tour' / 'hwnas.db'}"
    front = hwnas.pareto("tour", db=db)
    assert front.trials >= 50 and front.pareto
    (budget,) = front.budgets.values()
    chosen = [c for c in front.pareto if c.key == exported.proof.key]
    assert chosen and all(ms <= budget for ms in chosen[0].latency_ms.values())
    out = capsys.readouterr().out
    assert "trained tour" in out and "best-int8.tflite" in out


def test_bad_input_raises_hwnas_error_naming_the_argument(tmp_path):
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(hwnas.HwnasError) as e:
        hwnas.train("mnist", db=db)
    assert "mnist" in str(e.value)
    with pytest.raises(hwnas.HwnasError) as e:
        hwnas.search("nope", ["tflite"], config=hwnas.SearchConfig(trials=0), db=db)
    assert e.value.field == "trials"
    with pytest.raises(hwnas.HwnasError):
        hwnas.predict("tflite", {"resolution": 12}, space="digits", db=db)

"""`hwnas export` end to end on a tiny space: a really trained run, a search candidate, the
real TFLite converter and LiteRT interpreter, proofs checked against the files written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import hwnas, run_json, search_args, stored
from sqlalchemy import select

from hwnas.db.models import Candidate, Export, Search
from hwnas.db.session import open_db
from hwnas.search.cli import main
from hwnas.supernet.data import load_dataset

# The tiny space's subnet at the digits' own 8x8 size, so a user needs no resize.
NATIVE = {"resolution": 8, "depths": [1, 2], "kernels": [3, 0, 5, 3], "expands": [2, 0, 3, 2]}


@pytest.fixture(scope="module")
def searched(ready):
    cwd, url = ready
    run_json(*search_args(url, "to-export", 4), cwd=cwd)
    with open_db(url, create=False) as db, db.read() as s:
        q = select(Candidate.id).join(Search).where(Search.name == "to-export")
        cid = s.scalars(q.where(Candidate.pareto)).first()
    return cwd, url, cid


def exports(url: str) -> list:
    return stored(url, Export)


def test_candidate_fp32_export_carries_its_proof(searched):
    cwd, url, cid = searched
    out = run_json("export", "--candidate", str(cid), "--out", "c.tflite", "--db", url, cwd=cwd)
    data = (cwd / "c.tflite").read_bytes()
    assert out["bytes"] == len(data) and out["sha256"] == hashlib.sha256(data).hexdigest()
    assert "DEPTHWISE_CONV_2D" in out["ops"] and not any("FLEX" in op for op in out["ops"])
    assert out["max_abs_diff"] <= 1e-4
    assert out["val_acc_tflite"] == out["val_acc_jax"] and out["n_val"] > 100
    assert out["predicted_ms"] > 0 and out["measured_ms"] > 0
    assert out["latency_target"] == "tflite-fp32-t1"
    # measured beside anchor subnets of the predictor's data: the machine's drift taken out
    assert 0.2 < out["drift"] < 5
    assert out["measured_ms_drift_corrected"] == pytest.approx(out["measured_ms"] / out["drift"])
    side = json.loads((cwd / "c.json").read_text())
    assert side["input"] == out["input"] and side["sha256"] == out["sha256"]
    assert out["input"]["dtype"] == "float32" and out["input"]["shape"][0] == 1
    row = next(e for e in exports(url) if e.id == out["export"])
    assert row.candidate_id == cid and row.sha256 == out["sha256"]
    assert row.proof["max_abs_diff"] == out["max_abs_diff"]


def test_int8_with_integer_input_and_output(searched):
    cwd, url, _ = searched
    out = run_json(
        "export", "--run", "tiny", "--subnet", json.dumps(NATIVE), "--precision", "int8",
        "--int8-io", "--no-measure", "--out", "q.tflite", "--db", url, cwd=cwd,
    )  # fmt: skip
    assert out["input"]["dtype"] == "int8" and out["input"]["output"]["dtype"] == "int8"
    assert out["input"]["quantization"]["scale"] > 0
    assert "QUANTIZE" not in out["ops"]  # integer tensors end to end
    assert abs(out["acc_drop_points"]) <= 10  # a 1-epoch model; the bench checks the goal
    assert out["measured_ms"] is None


# What a phone-side Python has: numpy and LiteRT. The code is docs/export.md's snippet, as a user
# copies it: it reads model.tflite and model.json in its folder, and the contract is all it knows.
BLOCK = 'import sys\nfor m in ("jax", "jaxlib", "tensorflow", "flax", "supernet", "search"):\n' \
    "    sys.modules[m] = None\n"  # fmt: skip
LOOP = """
images = np.load(sys.argv[1])
print(json.dumps([contract["labels"].index(classify(img)) for img in images]))
"""


def device_snippet() -> str:
    """The device code of docs/export.md (the README points there)."""
    doc = (Path(__file__).parents[3] / "docs" / "export.md").read_text()
    return doc.split("## On the device")[1].split("```python\n")[1].split("```")[0]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_device_snippet_runs_with_only_litert_and_numpy(searched, precision, tmp_path):
    cwd, url, _ = searched
    name = f"native-{precision}.tflite"
    extra = ["--int8-io"] if precision == "int8" else []
    out = run_json(
        "export", "--run", "tiny", "--subnet", json.dumps(NATIVE), "--precision", precision,
        *extra, "--no-measure", "--out", name, "--db", url, cwd=cwd,
    )  # fmt: skip
    shutil.copy(cwd / name, tmp_path / "model.tflite")
    shutil.copy((cwd / name).with_suffix(".json"), tmp_path / "model.json")
    data = load_dataset("digits", None, seed=0)
    np.save(tmp_path / "val.npy", data.x_val)  # raw uint8 pixels, 8x8 = the subnet's resolution
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = BLOCK + device_snippet() + LOOP
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "val.npy")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    acc = np.mean(np.asarray(json.loads(done.stdout)) == data.y_val)
    # int8: an input on a rounding boundary may quantise one step apart (float64 here)
    tolerance = 1e-9 if precision == "fp32" else 0.01
    assert abs(acc - out["val_acc_tflite"]) <= tolerance


def test_existing_file_is_kept_without_force(searched):
    cwd, url, cid = searched
    (cwd / "keep.tflite").write_bytes(b"mine")
    args = ["export", "--candidate", str(cid), "--out", "keep.tflite", "--db", url]
    done = hwnas(*args, cwd=cwd, check=False)
    assert done.returncode == 2 and "--force" in done.stderr
    assert (cwd / "keep.tflite").read_bytes() == b"mine" and not (cwd / "keep.json").exists()
    run_json(*args, "--force", "--no-measure", cwd=cwd)
    assert (cwd / "keep.tflite").read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--candidate", "99999"], "no candidate 99999"),
        (["--run", "tiny", "--subnet", json.dumps({**NATIVE, "depths": [1, 2, 3]})], "subnet"),
        (["--run", "nope", "--subnet", json.dumps(NATIVE)], "no run named"),
        (["--run", "tiny"], "needs --subnet"),
        (["--candidate", "1", "--precision", "int4"], "--precision must be one of"),
        (["--candidate", "1", "--int8-io"], "needs --precision int8"),
        (["--candidate", "1", "--out", "nodir/x.tflite"], "does not exist"),
        (["--candidate", "1", "--out", "/proc/x.tflite"], "cannot write"),
        (["--candidate", "1", "--out", "x.onnx"], "must end in .tflite"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(searched, args, message, capsys, monkeypatch):
    """In-process through the console entry point (each check fails before any work)."""
    cwd, url, _ = searched
    monkeypatch.chdir(cwd)
    before = len(exports(url))
    out = [] if "--out" in args else ["--out", "bad.tflite"]
    assert main(["export", *args, *out, "--db", url]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (cwd / "bad.tflite").exists() and not (cwd / "bad.json").exists()
    assert len(exports(url)) == before

"""The measurement file (`hwnas.latency.measurement_file`): strict parsing with line numbers,
and the array path of `hwnas predict --subnets` against the subnet-by-subnet encoding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hwnas.latency.features import SpaceTables
from hwnas.latency.measurement_file import (
    MeasurementFileError,
    encode_subnet_lines,
    read_measurements,
)
from hwnas.latency.targets import Target
from hwnas.supernet.space import load_space

SPACE = load_space("ofa-mbv3-r25")


def write(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_the_preset_has_once_for_alls_25_resolutions():
    assert SPACE.resolutions == tuple(range(128, 225, 4)) and len(SPACE.resolutions) == 25


def test_lines_are_read_with_their_target_batch_and_spread(tmp_path):
    rng = np.random.default_rng(0)
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    write(tmp_path / "m.jsonl", [
        {"subnet": a.to_dict(), "latency_ms": 12.5, "spread": 0.5, "batch": 32, "note": "kept"},
        "",
        {"subnet": b.to_dict(), "latency_ms": 3, "target": "pixel7-b32"},
    ])  # fmt: skip
    rows = read_measurements(tmp_path / "m.jsonl", SPACE, Target.parse("pixel7-b32"))
    assert [(r.line, r.subnet, r.latency_ms, r.spread_ms) for r in rows] == [
        (1, a, 12.5, 0.5),
        (3, b, 3.0, None),
    ]
    assert {r.target.key for r in rows} == {"pixel7-b32"}


GOOD = {"subnet": SPACE.largest().to_dict(), "latency_ms": 10.0}
BAD = [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ({"latency_ms": 1.0}, "subnet is missing"),
    (GOOD | {"subnet": GOOD["subnet"] | {"resolution": 130}}, "not a subnet of space"),
    (GOOD | {"subnet": GOOD["subnet"] | {"depths": [5, 4, 4, 4, 4]}}, "not a subnet of space"),
    (GOOD | {"subnet": GOOD["subnet"] | {"kernels": [9] * 20}}, "not a subnet of space"),
    ({"subnet": GOOD["subnet"]}, "latency_ms is missing"),
    (GOOD | {"latency_ms": 0}, "latency_ms must be a positive number"),
    (GOOD | {"latency_ms": -2.5}, "latency_ms must be a positive number"),
    (GOOD | {"latency_ms": math.nan}, "latency_ms must be a positive number"),
    (GOOD | {"latency_ms": None}, "latency_ms must be a number"),
    (GOOD | {"latency_ms": "12"}, "latency_ms must be a number"),
    (GOOD | {"batch": 32}, "does not match target cpu (batch 1); import it into target cpu-b32"),
    (GOOD | {"batch": 0}, "batch must be a positive integer"),
    (GOOD | {"target": "tflite-int8-t1"}, "the line is of target tflite-int8-t1, not cpu"),
    (GOOD | {"spread": -1}, "spread must be a non-negative number"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "says"), BAD)
def test_a_bad_line_is_named_with_its_number_and_what_is_wrong(tmp_path, row, says):
    write(tmp_path / "m.jsonl", [GOOD, GOOD, row, GOOD])
    with pytest.raises(MeasurementFileError) as e:
        read_measurements(tmp_path / "m.jsonl", SPACE, Target("cpu"))
    assert e.value.line == 3 and says in e.value.what, str(e.value)


def test_without_a_target_every_line_names_its_own(tmp_path):
    write(tmp_path / "m.jsonl", [GOOD | {"target": "board"}, GOOD])
    with pytest.raises(MeasurementFileError, match="line 2: the line names no target"):
        read_measurements(tmp_path / "m.jsonl", SPACE)


def test_this_machines_own_targets_take_no_imports_but_a_labelled_one_does(tmp_path):
    write(tmp_path / "m.jsonl", [GOOD | {"target": "cpu@server"}, GOOD | {"target": "cpu-b8"}])
    with pytest.raises(MeasurementFileError, match="line 2: target cpu-b8 holds this machine"):
        read_measurements(tmp_path / "m.jsonl", SPACE)
    rows = read_measurements(tmp_path / "m.jsonl", SPACE, local=True)  # a bench's own file
    assert [r.target.key for r in rows] == ["cpu@server", "cpu-b8"]


def test_a_tflite_line_at_another_batch_says_tflite_runs_at_batch_1(tmp_path):
    write(tmp_path / "m.jsonl", [GOOD | {"batch": 8}])
    with pytest.raises(MeasurementFileError, match="tflite target runs at batch 1"):
        read_measurements(tmp_path / "m.jsonl", SPACE, Target("tflite"))


def test_subnet_lines_encode_as_the_subnets_do(tmp_path):
    rng = np.random.default_rng(1)
    subnets = [SPACE.sample(rng) for _ in range(500)]
    rows = [{"subnet": s.to_dict()} for s in subnets]
    rows[7]["subnet"]["kernels"] = [7] * SPACE.n_slots  # skipped slots may hold legal values
    write(tmp_path / "s.jsonl", rows)
    t = SpaceTables(SPACE)
    got, want = encode_subnet_lines(tmp_path / "s.jsonl", SPACE, t), t.encode(subnets)
    want_k = want.k.copy()
    want_k[7] = np.where(want.k[7] >= 0, SPACE.kernels.index(7), -1)
    assert (got.r == want.r).all() and (got.e == want.e).all() and (got.k == want_k).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"subnet": GOOD["subnet"] | {"resolution": 225}},
        {"subnet": GOOD["subnet"] | {"expands": [6] * 19}},
        {"subnet": GOOD["subnet"] | {"depths": [0, 4, 4, 4, 4]}},
        {"subnet": GOOD["subnet"] | {"resolution": 224.0}},
        {"subnet": GOOD["subnet"] | {"kernels": [3] * 19 + [False]}},
        '{"subnet": {"resolution": 224}}, {"subnet": {"resolution": 224}}',
        {"subnet": {"resolution": 224}},
        {"net": GOOD["subnet"]},
        "nonsense",
    ],
)
def test_a_bad_subnet_line_among_many_is_found_by_number(tmp_path, bad):
    rows: list = [GOOD] * 999
    rows.insert(611, bad)
    write(tmp_path / "s.jsonl", rows)
    with pytest.raises(MeasurementFileError) as e:
        encode_subnet_lines(tmp_path / "s.jsonl", SPACE, SpaceTables(SPACE))
    assert e.value.line == 612, str(e.value)


def test_an_empty_subnet_file_says_it_holds_none(tmp_path):
    (tmp_path / "s.jsonl").write_text("\n\n")
    with pytest.raises(MeasurementFileError, match="holds no subnet lines"):
        encode_subnet_lines(tmp_path / "s.jsonl", SPACE, SpaceTables(SPACE))

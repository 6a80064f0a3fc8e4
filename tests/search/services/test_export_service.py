"""`export` called as a library: a typed result whose JSON is the command's, and bad requests
that name their field (the CLI shows it as a flag, the dashboard and the API by name)."""

from __future__ import annotations

import json

import pytest

from hwnas.exceptions import HwnasError, shown
from hwnas.search.services.export import ExportRequest, ExportResult, export
from hwnas.search.services.export_latency import LatencyCheck

NATIVE = {"resolution": 8, "depths": [1, 2], "kernels": [3, 0, 5, 3], "expands": [2, 0, 3, 2]}


def test_a_run_subnet_exports_to_a_typed_result(ready, tmp_path):
    _, url = ready
    req = ExportRequest(str(tmp_path / "m.tflite"), run="tiny", subnet=json.dumps(NATIVE),
                        measure=False)  # fmt: skip
    result = export(url, req)
    assert isinstance(result, ExportResult) and result.export > 0
    assert result.proof.subnet.to_dict() == NATIVE and result.proof.n_val > 100
    assert result.proof.latency == LatencyCheck(
        "tflite-fp32-t1", result.proof.latency.predicted_ms
    )
    assert (tmp_path / "m.tflite").stat().st_size == result.proof.bytes
    out = result.to_json()
    assert list(out)[:3] == ["path", "sidecar", "subnet"] and list(out)[-1] == "export"
    assert out["measured_ms"] is None and "drift" not in out and "measured_cv" not in out
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["sha256"] == out["sha256"] and side["input"] == out["input"]


@pytest.mark.parametrize(
    "req, field, flag_text",
    [
        (ExportRequest("m.tflite", candidate=1, precision="int4"), "precision",
         "--precision must be one of fp32, fp16, int8"),
        (ExportRequest("m.tflite", candidate=1, threads=0), "threads",
         "--threads must be between 1 and 256, got 0"),
        (ExportRequest("m.tflite", candidate=1, int8_io=True), "int8_io",
         "--int8-io needs precision int8"),
        (ExportRequest("m.tflite", run="tiny"), "subnet", "--subnet is needed with run"),
        (ExportRequest("m.tflite"), "candidate", "give exactly one of --candidate or run"),
    ],
)  # fmt: skip
def test_a_bad_request_names_its_field(req, field, flag_text):
    with pytest.raises(HwnasError) as e:
        req.check()
    assert e.value.field == field
    assert shown(e.value, flags=True).startswith(flag_text)
    assert "--" not in shown(e.value, flags=False)


def test_latency_keys_not_taken_are_left_out():
    only = LatencyCheck("tflite-fp32-t1", predicted_ms=0.5)
    assert only.to_json() == {"latency_target": "tflite-fp32-t1", "predicted_ms": 0.5,
                              "measured_ms": None}  # fmt: skip
    full = LatencyCheck("cpu", 1.0, 1.2, 0.01, 1.2, 1.1, 1.2 / 1.1, 1.2 / 1.1)
    assert list(full.to_json()) == [
        "latency_target", "predicted_ms", "measured_ms", "measured_cv",
        "measured_over_predicted", "drift", "measured_ms_drift_corrected",
        "corrected_over_predicted",
    ]  # fmt: skip

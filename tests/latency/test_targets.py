from __future__ import annotations

import pytest

from hwnas.latency.targets import Target, TargetError


def test_keys_carry_the_settings():
    assert Target("cpu").key == "cpu"
    assert Target("tflite", 4, "int8").key == "tflite-int8-t4"
    assert Target("tflite", device="pixel").key == "tflite-fp32-t1@pixel"


@pytest.mark.parametrize("key", ["cpu", "gpu", "tflite-fp32-t1", "tflite-int8-t4@pixel"])
def test_parse_round_trips(key):
    assert Target.parse(key).key == key
    t = Target.parse(key)
    assert Target.from_settings(t.settings()) == t


def test_bare_tflite_is_fp32_one_thread():
    assert Target.parse("tflite") == Target("tflite", 1, "fp32")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Target("tpu"),
        lambda: Target("tflite", 0),
        lambda: Target("tflite", precision="fp8"),
        lambda: Target("cpu", threads=2),
        lambda: Target("cpu", device="bad label!"),
        lambda: Target.parse("tflite-fp32"),
    ],
)
def test_bad_targets_are_refused(make):
    with pytest.raises(TargetError):
        make()

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


@pytest.mark.parametrize("key", ["cpu-b32", "gpu-b8@a100", "pixel7", "jetson-orin-b16"])
def test_batch_and_imported_keys_round_trip(key):
    t = Target.parse(key)
    assert t.key == key and Target.from_settings(t.settings()) == t


def test_a_batch_is_part_of_the_key_and_batch_1_is_the_plain_kind():
    assert Target("cpu", batch=32).key == "cpu-b32" and Target("cpu", batch=1).key == "cpu"
    assert Target.parse("cpu-b32") != Target.parse("cpu")


def test_an_imported_target_is_any_other_name_and_cannot_be_measured():
    t = Target.parse("pixel7")
    assert (t.kind, t.name, t.measurable) == ("imported", "pixel7", False)
    assert Target.parse("tflite").measurable


@pytest.mark.parametrize("key", ["tflite-fp32-t1-b4", "cpu-fast", "pixel7@lab", "bad name"])
def test_keys_that_are_neither_a_runtime_nor_a_name_are_refused(key):
    with pytest.raises(TargetError):
        Target.parse(key)


def test_settings_written_before_batches_read_as_batch_1():
    assert Target.from_settings({"kind": "cpu", "threads": 1, "precision": "fp32"}).batch == 1

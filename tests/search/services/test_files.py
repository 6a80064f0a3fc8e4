"""Atomic, no-clobber writes of the files handed to the user."""

from __future__ import annotations

import os

import pytest

from hwnas.exceptions import shown
from hwnas.search.output import UserError
from hwnas.search.services.files import check_destination, write_new


def test_write_new_writes_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "m.tflite"
    write_new(out, b"abc", force=False)
    assert out.read_bytes() == b"abc"
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_no_overwrite_without_force(tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old")
    with pytest.raises(UserError) as e:
        check_destination(out, force=False, suffix=".tflite")
    assert "--force" in shown(e.value, flags=True)  # as the CLI says it
    with pytest.raises(UserError, match="appeared meanwhile"):
        write_new(out, b"new", force=False)  # the name appeared after the check
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.tflite"]
    write_new(out, b"new", force=True)
    assert out.read_bytes() == b"new"


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "m.tflite"
    with pytest.raises(TypeError):
        write_new(out, "not bytes", force=False)  # fails mid-write
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing/m.tflite", "does not exist"),
        ("m.onnx", "must end in .tflite"),
        ("afile/m.tflite", "does not exist"),
        ("adir.tflite", "is a folder"),
    ],
)
def test_bad_destinations(tmp_path, name, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.tflite").mkdir()
    with pytest.raises(UserError, match=message):
        check_destination(tmp_path / name, force=True, suffix=".tflite")


def test_unwritable_folder():
    """/proc takes no new files, even from root (CI runs as root, so chmod would not do)."""
    with pytest.raises(UserError, match="cannot write in /proc"):
        check_destination("/proc/m.tflite", force=False, suffix=".tflite")

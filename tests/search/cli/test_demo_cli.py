"""`hwnas demo`'s checks: bad input says what is wrong in one line, exits 2 and creates nothing.
(The demo itself takes minutes on the real digits run; its timed output is in the README.)"""

from __future__ import annotations

import pytest

from hwnas.search.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dir", "afile"], "is a file"),
        (["--dir", "new", "--epochs", "0"], "must be at least 1"),
        (["--dir", "new", "--trials", "0"], "must be at least 1"),
    ],
)
def test_bad_input_exits_2_and_creates_nothing(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert (tmp_path / "afile").read_text() == "keep"

"""`hwnas train`'s host-memory decision: above 32 px a one-process run restarts with mimalloc,
judged on the space it will train (a resumed run's as recorded), reading the database without
creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.db.session import open_db
from hwnas.search.services import training as train
from hwnas.supernet.space import load_space
from hwnas.supernet.train_config import TrainConfig


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(train, "restart_with_allocator", lambda: seen.append("restart"))
    monkeypatch.setattr(train, "reuse_host_memory", lambda: seen.append("reuse") or False)
    return seen


@pytest.mark.parametrize(("space", "expected"),
                         [("ofa-mbv3", ["restart", "reuse"]), ("cifar", ["reuse"])])  # fmt: skip
def test_training_restarts_above_32_px(calls, space, expected):
    train.prepare_host_memory(load_space(space))
    assert calls == expected


def test_a_resumed_run_is_judged_on_its_recorded_space(sqlite_url, tmp_path):
    digits, ofa = load_space("digits"), load_space("ofa-mbv3")
    with open_db(sqlite_url) as db:
        spec = train.RunSpec("folder", None, ofa, 0, "memory", TrainConfig())
        train._create_run(db, "big", spec, tmp_path / "c")
    assert train._space_to_train(sqlite_url, digits, "big", resume=True) == ofa
    assert train._space_to_train(sqlite_url, digits, "big", resume=False) == digits
    assert train._space_to_train(sqlite_url, digits, "other", resume=True) == digits


def test_looking_for_a_resumed_run_creates_no_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    digits = load_space("digits")
    assert train._space_to_train(url, digits, "big", resume=True) == digits
    assert not Path(tmp_path / "none.db").exists()

"""The Optuna storage: batched parameters and stale trials, on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import optuna
from optuna.storages import fail_stale_trials
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import update

from search.storage import GRACE_S, optuna_storage


def _study(url: str):
    storage = optuna_storage(url)
    return optuna.create_study(storage=storage, study_name="s"), storage


def _age(storage, trial_id: int, seconds: float) -> None:
    with storage.engine.begin() as conn:
        start = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds)
        conn.execute(
            update(models.TrialModel)
            .where(models.TrialModel.trial_id == trial_id)
            .values(datetime_start=start)  # the column; UTC
        )


def test_parameters_are_written_once_read(db_url):
    study, storage = _study(db_url)
    trial = study.ask()
    trial.suggest_categorical("a", [1, 2])
    trial.suggest_int("b", 0, 9)
    assert storage._pending  # batched until the next read or write
    study.tell(trial, 1.0)
    fresh = optuna.load_study(study_name="s", storage=db_url)
    assert set(fresh.trials[0].params) == {"a", "b"}


def test_a_trial_killed_before_its_first_heartbeat_is_retried(db_url):
    study, storage = _study(db_url)
    trial = study.ask()  # RUNNING, and no heartbeat was ever written
    trial.suggest_int("x", 0, 9)
    storage.flush()
    fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # young: a live worker may beat soon
    _age(storage, trial._trial_id, GRACE_S + 5)
    fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].params == study.trials[0].params

"""The Optuna storage: batched parameters and stale trials, on real SQLite and PostgreSQL."""

from __future__ import annotations

import pickle
from datetime import timedelta

import optuna
import pytest
from optuna.trial import TrialState

from hwnas.search.storage import GRACE_S, backdate_trial, fail_stale, optuna_storage

# The tests drive trials by hand (ask/tell); Optuna warns that heartbeats expect optimize().
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _study(url: str):
    storage = optuna_storage(url)
    return optuna.create_study(storage=storage, study_name="s"), storage


def test_a_trials_parameters_and_attributes_are_written_as_it_ends(db_url):
    study, storage = _study(db_url)
    trial = study.ask()
    trial.suggest_categorical("a", [1, 2])
    trial.suggest_int("b", 0, 9)
    trial.set_user_attr("u", 1)
    assert storage.unwritten == 3 and study.trials[0].params == trial.params  # read back
    assert storage.unwritten == 3
    study.tell(trial, 1.0)
    assert storage.unwritten == 0
    fresh = optuna.load_study(study_name="s", storage=db_url)
    assert set(fresh.trials[0].params) == {"a", "b"} and fresh.trials[0].user_attrs == {"u": 1}


def test_a_batched_parameter_reads_back_and_a_clash_raises_at_once(db_url):
    study, storage = _study(db_url)
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    assert storage.get_trial_param(trial._trial_id, "x") == trial.params["x"]
    other = study.ask()
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    with pytest.raises(ValueError):  # "x" is an int in this study
        storage.set_trial_param(other._trial_id, "x", 0.5, x)
    assert storage.unwritten == 1


def test_the_storage_pickles_and_keeps_its_sqlite_settings(sqlite_url):
    study, storage = _study(sqlite_url)
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    again = pickle.loads(pickle.dumps(storage))
    assert again.get_trial(trial._trial_id).params == trial.params  # pending written first
    with again.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_trial_killed_before_its_first_heartbeat_is_retried(db_url):
    study, storage = _study(db_url)
    trial = study.ask()  # RUNNING, and no heartbeat was ever written
    trial.suggest_int("x", 0, 9)
    storage.flush()
    fail_stale(study)
    assert study.trials[0].state == TrialState.RUNNING  # young: a live worker may beat soon
    backdate_trial(storage, trial._trial_id, GRACE_S + 5)
    fail_stale(study)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].params == study.trials[0].params


def test_the_optuna_internals_storage_uses_still_exist():
    """The contract of search/storage.py with Optuna: every private name it uses, with the
    parameters it passes. A new Optuna that breaks one fails here, not in a user's search."""
    import inspect
    from importlib import metadata

    from optuna.storages import RDBStorage

    from hwnas.search import storage

    assert int(metadata.version("optuna").split(".")[0]) == storage.OPTUNA_MAJOR
    for name in ("_set_trial_param", "_get_stale_trial_ids", "_get_trials", "_create_new_trial",
                 "_set_trial_attr_without_commit"):  # fmt: skip
        assert callable(getattr(RDBStorage, name)), name
    attr = inspect.signature(RDBStorage._set_trial_attr_without_commit).parameters
    assert list(attr)[1:] == ["session", "model_cls", "trial_id", "key", "value"]
    study = optuna.create_study()
    assert isinstance(study._study_id, int) and hasattr(study._storage, "get_all_trials")
    assert hasattr(optuna.storages._CachedStorage, "_backend") or "_backend" in inspect.getsource(
        optuna.storages._CachedStorage.__init__
    )
    params = inspect.signature(RDBStorage._set_trial_param).parameters
    assert list(params)[1:] == ["trial_id", "param_name", "param_value_internal", "distribution",
                                "previous_distribution"]  # fmt: skip
    assert list(inspect.signature(storage._create_scoped_session).parameters) == [
        "scoped_session", "ignore_integrity_error",
    ]  # fmt: skip
    m = storage.models
    for model, column in [
        (m.TrialModel, "_datetime_start_utc"), (m.TrialModel, "datetime_start"),
        (m.TrialModel, "_datetime_complete_utc"), (m.TrialModel, "trial_id"),
        (m.TrialUserAttributeModel, "key"), (m.TrialSystemAttributeModel, "key"),
        (m.TrialModel, "state"), (m.TrialModel, "study_id"),
        (m.TrialHeartbeatModel, "trial_heartbeat_id"), (m.TrialParamModel, "param_name"),
        (m.TrialParamModel, "distribution_json"), (m.StudyModel, "study_name"),
    ]:  # fmt: skip
        assert hasattr(model, column), (model.__name__, column)
    assert callable(m.TrialModel.find_or_raise_by_id)


def test_another_optuna_major_version_stops_with_one_line():
    from hwnas.search.output import UserError
    from hwnas.search.storage import check_optuna_version

    check_optuna_version("5.3.1")
    with pytest.raises(UserError, match=r"found Optuna 6\.0\.0; install one: pip install"):
        check_optuna_version("6.0.0")


def test_a_trial_failed_elsewhere_leaves_memory_and_the_others_keep_theirs(sqlite_url):
    """Another worker fails this process's running trial as stale: ending it raises Optuna's
    error, it leaves memory, and another running trial's parameters are still written."""
    study, storage = _study(sqlite_url)
    a, b = study.ask(), study.ask()
    a.suggest_int("x", 0, 9)
    b.suggest_int("x", 0, 9)
    other = optuna.storages.RDBStorage(sqlite_url)  # another process's view
    other.set_trial_state_values(a._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(a._trial_id, TrialState.COMPLETE, [1.0])
    storage.set_trial_state_values(b._trial_id, TrialState.COMPLETE, [1.0])
    assert storage.unwritten == 0 and storage._own == {}
    assert other.get_trial(b._trial_id).params == b.params
    assert other.get_trial(a._trial_id).state == TrialState.FAIL


def test_trials_read_whole_from_the_database_leave_memory(sqlite_url):
    study, storage = _study(sqlite_url)
    other = optuna.create_study(storage=optuna.storages.RDBStorage(sqlite_url), study_name="s",
                                load_if_exists=True)  # fmt: skip
    for _ in range(5):
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        study.tell(trial, 1.0)
        other.tell(other.ask(), 2.0)  # another worker's trial: the next read goes to the db
        study.trials  # noqa: B018  (a read)
    assert len(storage._ended) <= 1


def test_a_trial_skips_the_beat_of_its_start_but_not_the_next(db_url):
    """The beat Optuna's heartbeat thread sends as a trial starts is not written (a trial
    never beaten is protected by its start time); a beat a heartbeat interval later is, and
    so is another process's."""
    from optuna.storages._rdb import models

    study, storage = _study(db_url)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    beats = models.TrialHeartbeatModel.__table__
    with storage.engine.connect() as conn:
        assert conn.execute(beats.select()).all() == []
    backdate_trial(storage, trial._trial_id, storage.heartbeat_interval + 1)
    storage._own[trial._trial_id].trial.datetime_start -= timedelta(
        seconds=storage.heartbeat_interval + 1
    )
    storage.record_heartbeat(trial._trial_id)
    other = optuna_storage(db_url)
    mine = study.ask()
    other.record_heartbeat(mine._trial_id)  # not one of the other process's trials
    with storage.engine.connect() as conn:
        beaten = {r.trial_id for r in conn.execute(beats.select())}
    assert beaten == {trial._trial_id, mine._trial_id}
    fail_stale(study)
    assert {t.state for t in study.trials} == {TrialState.RUNNING}

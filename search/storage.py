"""Optuna's RDB storage in the hwnas database, safe for several writers on SQLite.

This is the one module that touches Optuna's internals (its ORM models, a scoped-session helper
and private storage methods). They are written against Optuna 5 (`OPTUNA_MAJOR`): another
major version stops with one line instead of corrupting a study, and
`tests/search/test_storage.py` checks every private name used here still exists.

The study lives in Optuna's own tables beside hwnas's, so `optuna studies --storage URL` and
optuna-dashboard read it as a normal study. SQLite answers "database is locked" at once (not
after the busy timeout) when a deferred transaction that has read tries to write while another
connection holds the write lock (optuna #820, #4994). Optuna's transactions read, then write;
so on SQLite every one of them begins IMMEDIATE and queues behind the busy timeout instead.

Optuna writes every `suggest_*` in a transaction of its own; a trial here suggests 46
parameters, which made the storage, not the search, the bottleneck (about 0.15 s a trial on
SQLite). `BatchedRDBStorage` keeps a trial's parameters until the next read or write of any
trial and writes them in one transaction.

Heartbeats: a worker that dies mid-trial (`kill -9`) stops beating; the next worker to start a
trial marks it FAIL and enqueues a retry with the same parameters, so no trial stays RUNNING.
A worker killed between creating a trial and its first beat leaves a trial with no heartbeat,
which Optuna never calls stale; here it is stale once it started more than the grace period ago
(by this machine's clock in UTC, the clock Optuna stamps `datetime_start` with).
"""

from __future__ import annotations

import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
from optuna import distributions
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hwnas.db.session import BUSY_TIMEOUT_MS, configure_sqlite
from hwnas.search.output import UserError

OPTUNA_MAJOR = 5  # the Optuna whose internals this module is written against
HEARTBEAT_S = 2
GRACE_S = 10
MAX_RETRY = 3


class BatchedRDBStorage(RDBStorage):
    """Optuna's RDB storage, writing the parameters of a trial in one transaction.

    A parameter of a RUNNING trial this storage created (or took from the queue) waits until
    the next read or write of any trial; everything Optuna's contract says `set_trial_param`
    raises it raises at once: KeyError (no such trial), `UpdateFinishedTrialError` (finished)
    and ValueError (a distribution unlike the study's earlier one for that name, as this
    storage or `_CachedStorage` knows it; the database's is checked again when written).
    A parameter of any other trial is written at once, as Optuna writes it.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_batching()

    def _init_batching(self) -> None:
        self._pending: list[tuple] = []
        self._pending_lock = threading.Lock()
        self._running: dict[int, int] = {}  # trial id -> study id: RUNNING, made here
        self._dists: dict[tuple[int, str], distributions.BaseDistribution] = {}

    def __getstate__(self) -> dict[Any, Any]:
        """Picklable (Optuna's contract): the pending parameters are written first, and the
        lock and what this process knows of its running trials stay behind."""
        self.flush()
        state = super().__getstate__()
        for key in ("_pending", "_pending_lock", "_running", "_dists"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._init_batching()
        u = make_url(self.url)
        if u.get_backend_name() == "sqlite":
            configure_sqlite(self.engine, u.database, begin="IMMEDIATE")

    def _set_trial_param(self, trial_id, param_name, value, distribution, previous) -> None:
        study_id = self._running.get(trial_id)
        if study_id is None:  # not a running trial of this process: Optuna's own way
            self.flush()
            super()._set_trial_param(trial_id, param_name, value, distribution, previous)
            return
        known = previous or self._dists.get((study_id, param_name))
        if known is not None:
            distributions.check_distribution_compatibility(known, distribution)
        self._dists.setdefault((study_id, param_name), distribution)
        with self._pending_lock:
            self._pending.append((trial_id, param_name, value, distribution, previous))

    def _create_new_trial(self, study_id: int, template_trial=None):
        self.flush()
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self._running[trial._trial_id] = study_id
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        self.flush()
        done = super().set_trial_state_values(trial_id, state, values)
        if done and state == TrialState.RUNNING:  # taken from the queue by this process
            with _create_scoped_session(self.scoped_session) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                self._running[trial_id] = int(trial.study_id)
        if state.is_finished():
            self._running.pop(trial_id, None)
        return done

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, and also RUNNING trials that never beat: a worker killed
        between creating a trial and its first heartbeat left them, and Optuna skips them.
        The one departure from Optuna's contract, by design: Optuna's storage test
        `test_fail_stale_trials[2]` expects such a trial to stay RUNNING."""
        stale = set(super()._get_stale_trial_ids(study_id))
        cutoff = _utc_now() - timedelta(seconds=self.grace_period or 2 * HEARTBEAT_S)
        with _create_scoped_session(self.scoped_session, True) as session:
            silent = (
                session.query(models.TrialModel.trial_id)
                .outerjoin(models.TrialHeartbeatModel)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
                .filter(models.TrialModel._datetime_start_utc < cutoff)
            )
            stale.update(row.trial_id for row in silent)
        return sorted(stale)

    def flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        by_trial: dict[int, list[tuple]] = {}
        for p in pending:
            by_trial.setdefault(p[0], []).append(p)
        with _create_scoped_session(self.scoped_session, True) as session:
            for trial_id, params in by_trial.items():
                self._insert_params(session, trial_id, params)

    def _insert_params(self, session, trial_id: int, params: list[tuple]) -> None:
        """What `_set_trial_param_without_commit` does per parameter, once per trial, and
        one bulk insert."""
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        # Optuna's models are SQLAlchemy 1.x style: a row's column is typed as a Column
        self.check_trial_is_updatable(trial_id, trial.state)  # type: ignore[arg-type]
        rows = []
        for _, name, value, dist, previous in params:
            if previous is None:
                previous = _previous_distribution(session, int(trial.study_id), name)
            if previous is not None:
                distributions.check_distribution_compatibility(previous, dist)
            rows.append(
                {
                    "trial_id": trial_id,
                    "param_name": name,
                    "param_value": value,
                    "distribution_json": distributions.distribution_to_json(dist),
                }
            )
        session.execute(insert(models.TrialParamModel), rows)


def _flushing(name: str):
    """`name` of RDBStorage, writing the pending parameters first."""

    def method(self, *args, **kwargs):
        self.flush()
        return getattr(RDBStorage, name)(self, *args, **kwargs)

    method.__name__ = name
    return method


# Every other read or write of a trial sees the parameters written before it.
for _name in (
    "set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_trial_param",
    "_get_trials",
):
    setattr(BatchedRDBStorage, _name, _flushing(_name))


def _utc_now() -> datetime:
    """Naive UTC, as Optuna stores `datetime_start`."""
    return datetime.now(UTC).replace(tzinfo=None)


def _previous_distribution(session, study_id: int, name: str):
    row = (
        session.query(models.TrialParamModel)
        .join(models.TrialModel)
        .filter(models.TrialModel.study_id == study_id)
        .filter(models.TrialParamModel.param_name == name)
        .first()
    )
    return None if row is None else distributions.json_to_distribution(row.distribution_json)


def _create(url: str, engine_kwargs: dict, beat: dict, tries: int = 5) -> BatchedRDBStorage:
    """The storage; Optuna creates its tables on first use, and two machines doing so at the
    same moment collide on PostgreSQL (duplicate table or type): the loser tries again."""
    for i in range(tries):
        try:
            return BatchedRDBStorage(url, engine_kwargs=dict(engine_kwargs), **beat)
        except (IntegrityError, ProgrammingError):
            if i == tries - 1:
                raise
            time.sleep(0.5 * (i + 1))
    raise AssertionError("unreachable")


def check_optuna_version(version: str = optuna.__version__) -> None:
    major = int(version.split(".")[0])
    if major != OPTUNA_MAJOR:
        raise UserError(
            f"hwnas's search storage is written for Optuna {OPTUNA_MAJOR}.x and found Optuna "
            f"{version}; install one: pip install 'optuna>={OPTUNA_MAJOR},<{OPTUNA_MAJOR + 1}'"
        )


def trial_states(session) -> dict[str, dict[str, int]]:
    """Trial counts per study name and state (COMPLETE, RUNNING, ...), read in `session`
    (any SQLAlchemy session on the database); {} before Optuna created its tables."""
    q = (
        select(models.StudyModel.study_name, models.TrialModel.state, func.count())
        .join(models.TrialModel, models.TrialModel.study_id == models.StudyModel.study_id)
        .group_by(models.StudyModel.study_name, models.TrialModel.state)
    )
    out: dict[str, dict[str, int]] = {}
    try:
        rows = session.execute(q).all()
    except (OperationalError, ProgrammingError):  # no Optuna tables yet
        session.rollback()
        return {}
    for name, state, n in rows:
        out.setdefault(name, {})[
            TrialState(state).name if isinstance(state, int) else state.name
        ] = int(n)
    return out


def backdate_trial(storage: RDBStorage, trial_id: int, seconds: float) -> None:
    """Move a trial's start `seconds` back (UTC, as Optuna stamps it): how the stale-trial
    tests make a trial look abandoned without waiting."""
    with storage.engine.begin() as conn:
        conn.execute(
            update(models.TrialModel)
            .where(models.TrialModel.trial_id == trial_id)
            .values(datetime_start=_utc_now() - timedelta(seconds=seconds))
        )


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped beating (Optuna's `fail_stale_trials`, marked
    experimental since 2.9; hwnas depends on it and tests it here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def optuna_storage(url: str, heartbeat: bool = True) -> RDBStorage:
    """hwnas's storage of the studies in database `url`, with heartbeats (a dead worker's
    trials are retried) unless `heartbeat` is False."""
    check_optuna_version()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and their retry callback are marked experimental since Optuna 2.8-2.9; hwnas
    # depends on them (tested with this module), so the warning says nothing to a user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        beat = (
            {
                "heartbeat_interval": HEARTBEAT_S,
                "grace_period": GRACE_S,
                "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(MAX_RETRY),
            }
            if heartbeat
            else {}
        )
        return rdb_storage(url, **beat)


def rdb_storage(url: str, **rdb_kwargs: Any) -> BatchedRDBStorage:
    """The storage at `url`, `rdb_kwargs` passed to Optuna's `RDBStorage` (its heartbeat
    settings: how Optuna's own storage tests construct it, `.ci/optuna_contract.py`)."""
    u = make_url(url)
    sqlite = u.get_backend_name() == "sqlite"
    timeout = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    kwargs: dict[str, Any] = timeout if sqlite else {"pool_pre_ping": True}
    storage = _create(url, kwargs, rdb_kwargs)
    if sqlite:
        configure_sqlite(storage.engine, u.database, begin="IMMEDIATE")
        storage.engine.dispose()  # connections opened while creating tables lack the settings
    return storage

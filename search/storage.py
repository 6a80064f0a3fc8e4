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

Optuna writes every `suggest_*` and attribute in a transaction of its own and reads the
running trial back from the database several times a trial; a trial here suggests 46
parameters, which made the storage, not the search, the bottleneck. `BatchedRDBStorage` keeps
what is set on a running trial of its own process in memory, answers reads of it from there,
and writes it in the transaction that ends the trial (four Core statements, compiled once), so
a finished trial is in the database whole (`kill -9` loses no finished trial). It honours
Optuna's storage contract:
`.ci/optuna-contract` runs Optuna's own storage tests against it, all passing but the one
departure by design (`_get_stale_trial_ids`).

Heartbeats: a worker that dies mid-trial (`kill -9`) stops beating; the next worker to start a
trial marks it FAIL and enqueues a retry (with the parameters that were written: none, unless
something flushed them), so no trial stays RUNNING.
A worker killed between creating a trial and its first beat leaves a trial with no heartbeat,
which Optuna never calls stale; here it is stale once it started more than the grace period ago
(by this machine's clock in UTC, the clock Optuna stamps `datetime_start` with). That rule also
lets a trial skip the beat Optuna sends as it starts (`record_heartbeat`): a search trial here
ends in milliseconds, long before the next beat.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
from optuna import distributions
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hwnas.db.session import BUSY_TIMEOUT_MS, configure_sqlite
from hwnas.search.output import UserError

# INSERT .. ON CONFLICT, per dialect
UPSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}
OPTUNA_MAJOR = 5  # the Optuna whose internals this module is written against
HEARTBEAT_S = 2
GRACE_S = 10
MAX_RETRY = 3


@dataclass
class _Own:
    """A RUNNING trial this storage began: the trial as the database had it then, and every
    parameter and attribute set on it since (`params`: name -> (internal value,
    distribution)), with which of them are not written yet. Each dict is replaced, never
    changed in place, so a view taken by another thread sees a whole one."""

    study_id: int
    trial: FrozenTrial
    params: dict[str, tuple[float, distributions.BaseDistribution]] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    unwritten: list[tuple[str, Any, Any]] = field(default_factory=list)  # (what, key, value)

    def view(self) -> FrozenTrial:
        """The trial with everything set on it, as a read of the database would give it once
        it is written."""
        t = copy.copy(self.trial)
        t.params = {**t.params, **{n: d.to_external_repr(v) for n, (v, d) in self.params.items()}}
        t.distributions = {**t.distributions, **{n: d for n, (_, d) in self.params.items()}}
        t.user_attrs = {**t.user_attrs, **self.user_attrs}
        t.system_attrs = {**t.system_attrs, **self.system_attrs}
        return t

    def ended(self, state: TrialState, values, completed: datetime | None) -> FrozenTrial:
        """The trial as it ended: `view` with its state, values and completion time."""
        t = self.view()
        t.state, t.datetime_complete = state, completed
        t._values = None if values is None else [float(v) for v in values]
        return t

    def param(self, name: str) -> float:
        if name in self.params:
            return self.params[name][0]
        return self.trial.distributions[name].to_internal_repr(self.trial.params[name])


class BatchedRDBStorage(RDBStorage):
    """Optuna's RDB storage that writes a trial's parameters and attributes together.

    What is set on a RUNNING trial this storage began (created, or took from the queue) is
    kept in memory, read back from there (`get_trial` and every read of the study's trials
    see it at once), and written in one transaction just before the trial finishes (or at
    `flush`). Everything Optuna's contract says `set_trial_param` raises it raises at once:
    KeyError (no such trial), `UpdateFinishedTrialError` (finished) and ValueError (a
    distribution unlike the study's earlier one for that name, as this storage or
    `_CachedStorage` knows it; the database's is checked again when written). Another
    process's trial is written at once, as Optuna writes it. A finished trial is in the
    database whole; a worker killed mid-trial leaves its trial without parameters, and its
    retry samples afresh.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_batching()

    def _init_batching(self) -> None:
        self._lock = threading.Lock()
        self._own: dict[int, _Own] = {}
        self._ended: dict[int, tuple[_Own, TrialState, Any]] = {}  # ended here, not read yet
        self._dists: dict[tuple[int, str], distributions.BaseDistribution] = {}

    def __getstate__(self) -> dict[Any, Any]:
        """Picklable (Optuna's contract): what is in memory is written first, and the lock
        and this process's running trials stay behind."""
        self.flush()
        state = super().__getstate__()
        for key in ("_lock", "_own", "_ended", "_dists"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._init_batching()
        u = make_url(self.url)
        if u.get_backend_name() == "sqlite":
            configure_sqlite(self.engine, u.database, begin="IMMEDIATE")

    # ---- trials this process runs --------------------------------------------------------

    def _create_new_trial(self, study_id: int, template_trial=None):
        if template_trial is None and self.engine.name in UPSERTS:
            trial = self._create_running(study_id)
        else:
            trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            with self._lock:
                self._own[trial._trial_id] = _Own(study_id, copy.deepcopy(trial))
        return trial

    def _create_running(self, study_id: int, tries: int = 5) -> FrozenTrial:
        """What Optuna's `_create_new_trial` does for a new RUNNING trial, in three Core
        statements where its ORM takes four: under the study's lock (FOR UPDATE; on SQLite the
        IMMEDIATE transaction), the trial numbered by the study's trials before it. Retried as
        Optuna retries (a deadlock between machines is a StorageInternalError)."""
        studies, trials = models.StudyModel.__table__, models.TrialModel.__table__
        started = datetime.now()  # naive local time, as Optuna's FrozenTrial has it
        for attempt in range(1, tries + 1):
            try:
                with _create_scoped_session(self.scoped_session) as session:
                    conn = session.connection()
                    study = select(studies.c.study_id).where(studies.c.study_id == study_id)
                    if conn.execute(study.with_for_update()).first() is None:
                        raise KeyError(f"No study with study_id {study_id} exists.")
                    number = conn.execute(
                        select(func.count()).where(trials.c.study_id == study_id)
                    ).scalar_one()
                    made = conn.execute(trials.insert().values(
                        study_id=study_id, number=number, state=TrialState.RUNNING,
                        datetime_start=started.astimezone(UTC).replace(tzinfo=None),
                    ))  # fmt: skip
                    key = made.inserted_primary_key
                    assert key is not None, "an INSERT gives its primary key"
                    trial_id = int(key[0])
                break
            except optuna.exceptions.StorageInternalError:
                if attempt == tries:
                    raise
                time.sleep(random.random() * 2.0)
        return FrozenTrial(
            number=int(number), state=TrialState.RUNNING, value=None, values=None,
            datetime_start=started, datetime_complete=None, params={}, distributions={},
            user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=trial_id,
        )  # fmt: skip

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        """Optuna's, after what is set on the trial is written, in the same transaction. A
        running trial of this process that finishes is ended by `_end_own`; any other change
        by Optuna's own method, in its scoped session, which the writes join. A trial that
        ends leaves memory whatever happens: finished here, or already finished elsewhere
        (failed as stale by another worker: Optuna's error is raised)."""
        done = False
        fast = state.is_finished() and trial_id in self._own and self.engine.name in UPSERTS
        try:
            with _create_scoped_session(self.scoped_session) as session:
                if fast:
                    done = self._end_own(session, trial_id, state, values)
                else:
                    self._write_unwritten(session, trial_id)
                    done = super().set_trial_state_values(trial_id, state, values)
        except IntegrityError:
            if not fast:
                raise  # Optuna's own answers False itself
        finally:
            if state.is_finished():
                with self._lock:
                    own = self._own.pop(trial_id, None)
                    if done and own is not None:
                        self._ended[trial_id] = (own, state, values)
        if done and state == TrialState.RUNNING:  # taken from the queue by this process
            self._begin_own(trial_id)
        return done

    def _end_own(self, session, trial_id: int, state: TrialState, values) -> bool:
        """What Optuna's `set_trial_state_values` does to finish a trial, in four statements
        where its ORM takes seven or more: the trial ended only if still RUNNING (else
        Optuna's error), its parameters and attributes written, its values upserted."""
        trials = models.TrialModel.__table__
        conn = session.connection()
        ended = conn.execute(
            trials.update()
            .where(trials.c.trial_id == trial_id, trials.c.state == TrialState.RUNNING)
            .values(state=state, datetime_complete=_utc_now())
        )
        if ended.rowcount != 1:  # no such trial (KeyError) or finished (Optuna's error)
            found = models.TrialModel.find_or_raise_by_id(trial_id, session)
            self.check_trial_is_updatable(trial_id, found.state)  # type: ignore[arg-type]
            raise AssertionError(f"trial {trial_id} is RUNNING but was not ended")
        self._write_unwritten(session, trial_id, checked=True)
        if values is not None:
            rows = []
            for objective, v in enumerate(values):
                stored, kind = models.TrialValueModel.value_to_stored_repr(float(v))
                rows.append({"trial_id": trial_id, "objective": objective, "value": stored,
                             "value_type": kind})  # fmt: skip
            conn.execute(_upsert(self.engine.name, models.TrialValueModel), rows)
        return True

    def _begin_own(self, trial_id: int) -> None:
        trial = super().get_trial(trial_id)
        with _create_scoped_session(self.scoped_session) as session:
            study_id = int(models.TrialModel.find_or_raise_by_id(trial_id, session).study_id)
        with self._lock:
            self._own[trial_id] = _Own(study_id, trial)

    def _set_trial_param(self, trial_id, param_name, value, distribution, previous) -> None:
        own = self._own.get(trial_id)
        if own is None:  # not a running trial of this process: Optuna's own way
            super()._set_trial_param(trial_id, param_name, value, distribution, previous)
            return
        known = previous or self._dists.get((own.study_id, param_name))
        if known is not None:
            distributions.check_distribution_compatibility(known, distribution)
        with self._lock:
            self._dists.setdefault((own.study_id, param_name), distribution)
            own.params = {**own.params, param_name: (value, distribution)}
            own.unwritten.append(("param", param_name, (value, distribution, previous)))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._keep_attr(trial_id, "user", key, value):
            super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._keep_attr(trial_id, "system", key, value):
            super().set_trial_system_attr(trial_id, key, value)

    def _keep_attr(self, trial_id: int, what: str, key: str, value: Any) -> bool:
        """Keep the attribute in memory if the trial is a running one of this process."""
        own = self._own.get(trial_id)
        if own is None:
            return False
        with self._lock:
            if what == "user":
                own.user_attrs = {**own.user_attrs, key: value}
            else:
                own.system_attrs = {**own.system_attrs, key: value}
            own.unwritten.append((what, key, value))
        return True

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's, but a running trial of this process does not write the beat Optuna's
        heartbeat thread sends as the trial starts: a trial that has never beaten is stale
        only once it started more than the grace period ago (`_get_stale_trial_ids`), so the
        thread's next beat, one heartbeat interval later, is the first one needed (a search
        trial here ends long before it: a write transaction a trial fewer)."""
        own = self._own.get(trial_id)
        started = own.trial.datetime_start if own is not None else None
        interval = timedelta(seconds=self.heartbeat_interval or 0)
        if started is not None and datetime.now() - started < interval:
            return
        super().record_heartbeat(trial_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        own = self._own.get(trial_id)
        if own is not None:
            return own.view()
        ended = self._ended.get(trial_id)
        if ended is not None:  # as it ended here, if nothing changed it since
            trial = models.TrialModel
            q = select(trial.state, trial._datetime_complete_utc).where(trial.trial_id == trial_id)
            with self._reading() as conn:
                row = conn.execute(q).first()
            if row is not None and TrialState(row[0]) == ended[1]:
                return ended[0].ended(ended[1], ended[2], _local(row[1]))
            with self._lock:
                self._ended.pop(trial_id, None)
        return super().get_trial(trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        own = self._own.get(trial_id)
        if own is None:
            return super().get_trial_param(trial_id, param_name)
        try:
            return own.param(param_name)
        except KeyError:
            raise KeyError(f"trial {trial_id} has no parameter {param_name!r}") from None

    def _get_trials(self, study_id, states, included_trial_ids, trial_id_greater_than):
        """Optuna's read, with this process's running trials as they are in memory. Where
        every trial the read matches is one of those, or one that ended here since the last
        read (one worker, between trials: the common case), only their ids, states and
        completion times are read."""
        found = self._matching(study_id, states, included_trial_ids, trial_id_greater_than)
        memory = None if found is None else self._from_memory(found)
        if memory is not None:
            return memory
        rows = super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)
        with self._lock:
            for t in rows:  # read whole: no longer needed in memory
                self._ended.pop(t._trial_id, None)
            own = {t._trial_id: self._own.get(t._trial_id) for t in rows}
        return [
            o.view() if (o := own[t._trial_id]) is not None and t.state == TrialState.RUNNING
            else t
            for t in rows
        ]  # fmt: skip

    def _from_memory(self, found: list[tuple]) -> list[FrozenTrial] | None:
        """The trials of `found` ((id, state, completion time)) from memory: this process's
        running ones, and the ones that ended here (then forgotten); None unless all are."""
        with self._lock:
            known: list[tuple[_Own, tuple | None]] = []
            for trial_id, state, completed in found:
                own = self._own.get(trial_id) if state == TrialState.RUNNING else None
                ended = self._ended.get(trial_id)
                if own is not None:
                    known.append((own, None))
                elif ended is not None and ended[1] == state:
                    known.append((ended[0], (state, ended[2], completed)))
                else:
                    return None
            for trial_id, _, _ in found:
                self._ended.pop(trial_id, None)
        return [o.view() if end is None else o.ended(*end) for o, end in known]

    def _matching(self, study_id, states, included, greater_than) -> list[tuple] | None:
        """(id, state, completion time) of the trials `_get_trials` returns, in its order;
        None where Optuna's read must answer (no such study, too many ids for one query).
        One query: the study joined with its matching trials (a study without any gives one
        row of NULLs, a missing study none)."""
        trial, study = models.TrialModel, models.StudyModel
        included = {i for i in included if i <= greater_than}
        on = trial.study_id == study.study_id
        if states is not None:
            on &= trial.state.in_(list(states))
        if greater_than > -1:
            newer = trial.trial_id > greater_than
            on &= or_(trial.trial_id.in_(included), newer) if included else newer
        q = (
            select(trial.trial_id, trial.state, trial._datetime_complete_utc)
            .select_from(study)
            .outerjoin(trial, on)
            .where(study.study_id == study_id)
            .order_by(trial.trial_id)
        )
        try:
            with self._reading() as conn:
                rows = conn.execute(q).all()
        except OperationalError:  # too many ids for one IN: Optuna's read falls back itself
            return None
        if not rows:
            return None
        return [(int(i), TrialState(s), _local(done)) for i, s, done in rows if i is not None]

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        own = self._own.get(trial_id)
        return own.view().user_attrs if own else super().get_trial_user_attrs(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        own = self._own.get(trial_id)
        return own.view().system_attrs if own else super().get_trial_system_attrs(trial_id)

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        """Written at once (a pruner on another worker may read it)."""
        super().set_trial_intermediate_value(trial_id, step, value)
        own = self._own.get(trial_id)
        if own is not None:  # a new dict: a trial read before keeps what it had
            own.trial.intermediate_values = {**own.trial.intermediate_values, step: value}

    @property
    def unwritten(self) -> int:
        """Parameters and attributes set on this process's running trials, not written yet."""
        return sum(len(o.unwritten) for o in self._own.values())

    def flush(self) -> None:
        """Write what is set on this process's running trials and not written yet, a
        transaction per trial; a trial finished elsewhere meanwhile leaves memory."""
        for trial_id in list(self._own):
            try:
                with _create_scoped_session(self.scoped_session) as session:
                    self._write_unwritten(session, trial_id)
            except UpdateFinishedTrialError:
                with self._lock:
                    self._own.pop(trial_id, None)

    def _write_unwritten(self, session, trial_id: int, checked: bool = False) -> None:
        """Write trial `trial_id`'s items in `session` (`checked`: the trial is known to be
        updatable in it); on an error they are kept again."""
        with self._lock:
            own = self._own.get(trial_id)
            if own is None or not own.unwritten:
                return
            items, own.unwritten = own.unwritten, []
        try:
            self._write(session, trial_id, own.study_id, items, checked)
        except Exception:
            with self._lock:
                own.unwritten = items + own.unwritten
            raise

    def _write(
        self, session, trial_id: int, study_id: int, items: list[tuple], checked: bool
    ) -> None:
        """What `_set_trial_param_without_commit` does per parameter and
        `_set_trial_attr_without_commit` per attribute, once per trial: one bulk insert of
        the parameters, one upsert per kind of attribute (Optuna's, one by one, on a
        database other than SQLite and PostgreSQL)."""
        if not checked:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            # Optuna's models are SQLAlchemy 1.x style: a row's column is typed as a Column
            self.check_trial_is_updatable(trial_id, trial.state)  # type: ignore[arg-type]
        rows = []
        attrs: dict[str, dict[str, Any]] = {"user": {}, "system": {}}
        for what, key, value in items:
            if what != "param":
                attrs[what][key] = value  # the last one set
                continue
            internal, dist, previous = value
            if previous is None:  # `_CachedStorage` passes the study's, where it knows it
                previous = _previous_distribution(session, study_id, key)
            if previous is not None:
                distributions.check_distribution_compatibility(previous, dist)
            rows.append(
                {
                    "trial_id": trial_id,
                    "param_name": key,
                    "param_value": internal,
                    "distribution_json": distributions.distribution_to_json(dist),
                }
            )
        if rows:
            session.connection().execute(models.TrialParamModel.__table__.insert(), rows)
        for what, model in (
            ("user", models.TrialUserAttributeModel),
            ("system", models.TrialSystemAttributeModel),
        ):
            if attrs[what]:
                self._upsert_attrs(session, model, trial_id, attrs[what])

    def _upsert_attrs(self, session, model, trial_id: int, attrs: dict[str, Any]) -> None:
        if self.engine.name not in UPSERTS:
            for key, value in attrs.items():
                self._set_trial_attr_without_commit(session, model, trial_id, key, value)
            return
        rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                for k, v in attrs.items()]  # fmt: skip
        session.connection().execute(_upsert(self.engine.name, model), rows)

    def _reading(self):
        """A connection for a read of ours: on SQLite a DEFERRED transaction, which takes no
        write lock (Optuna's own transactions begin IMMEDIATE: they read, then write)."""
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    # ---- stale trials --------------------------------------------------------------------

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials (a heartbeat older than the grace period by the database's
        clock, as Optuna judges it), and also RUNNING trials that never beat and started
        before the grace period by this machine's clock: a worker killed between creating a
        trial and its first heartbeat left them, and Optuna skips them. Run before every
        trial: one read that takes no write lock (two on a server, which has its own clock),
        where Optuna's takes three in a write transaction. The one departure from Optuna's
        contract, by design: Optuna's storage test `test_fail_stale_trials[2]` expects such a
        trial to stay RUNNING."""
        grace = timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 1))
        silent = timedelta(seconds=self.grace_period or 2 * HEARTBEAT_S)  # never beaten
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        with self._reading() as conn:
            if self.engine.name == "sqlite":  # the database's clock is this process's: UTC,
                now = _utc_now().replace(microsecond=0)  # whole seconds as SQLite keeps it
            else:
                now = conn.execute(select(func.now())).scalar_one().replace(tzinfo=None)
            q = (
                select(trial.trial_id)
                .outerjoin(beat, beat.trial_id == trial.trial_id)
                .where(trial.study_id == study_id, trial.state == TrialState.RUNNING)
                .where(
                    or_(
                        beat.heartbeat < now - grace,
                        (beat.trial_heartbeat_id.is_(None))
                        & (trial._datetime_start_utc < _utc_now() - silent),
                    )
                )
            )
            return sorted(int(i) for i in conn.execute(q).scalars())


class StopAtComplete:
    """Optuna callback: stop the study once it has `n` COMPLETE trials, counting every worker's
    (Optuna's `MaxTrialsCallback`, by one COUNT query where that reads every trial of the
    study, about a fifth of a trial's time on SQLite)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if count_complete(study) >= self.n:
            study.stop()


def count_complete(study: optuna.Study) -> int:
    """The study's COMPLETE trials, all workers', by one query."""
    storage = getattr(study._storage, "_backend", study._storage)  # under `_CachedStorage`
    assert isinstance(storage, BatchedRDBStorage)
    q = (
        select(func.count())
        .select_from(models.TrialModel)
        .where(models.TrialModel.study_id == study._study_id)
        .where(models.TrialModel.state == TrialState.COMPLETE)
    )
    with storage._reading() as conn:
        return int(conn.execute(q).scalar_one())


# the unique key and the updated columns of each table written by upsert
_UPSERT_KEYS = {
    "trial_values": (("trial_id", "objective"), ("value", "value_type")),
    "trial_user_attributes": (("trial_id", "key"), ("value_json",)),
    "trial_system_attributes": (("trial_id", "key"), ("value_json",)),
}


@functools.cache
def _upsert(dialect: str, model):
    """INSERT .. ON CONFLICT DO UPDATE into `model`'s table, executed with a list of rows (one
    statement, compiled once and cached by SQLAlchemy)."""
    table = model.__table__
    keys, updated = _UPSERT_KEYS[table.name]
    stmt = UPSERTS[dialect](table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c: stmt.excluded[c] for c in updated},
    )


def _local(utc: datetime | None) -> datetime | None:
    """A stored UTC time as Optuna's models give it: naive local time."""
    return None if utc is None else utc.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


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
    """Move a trial's start, and its last heartbeat if it has one, to `seconds` ago (UTC, as
    Optuna stamps them): how the stale-trial tests make a trial look abandoned without
    waiting out the grace period."""
    then = _utc_now() - timedelta(seconds=seconds)
    trial, beat = models.TrialModel, models.TrialHeartbeatModel
    with storage.engine.begin() as conn:
        conn.execute(update(trial).where(trial.trial_id == trial_id).values(datetime_start=then))
        conn.execute(update(beat).where(beat.trial_id == trial_id).values(heartbeat=then))


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

"""SQLAlchemy 2.0 typed models for everything hwnas records.

Every table is prefixed `hwnas_` so that Optuna's own tables (studies, trials, ...) can live in
the same database without a collision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 7


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class Fitted:
    """A fitted predictor's columns beside its own: the name a search's refit gets
    (`SEARCH/rN`, else none), its training size, held-out metrics, the model as JSON (never
    pickled) and when it was fitted."""

    name: Mapped[str | None] = mapped_column(String(240))
    n_train: Mapped[int]
    metrics: Mapped[dict[str, Any]]
    model: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Meta(Base):
    """Key/value facts about the database itself (the schema version)."""

    __tablename__ = "hwnas_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    """One supernet training run."""

    __tablename__ = "hwnas_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset: Mapped[str] = mapped_column(String(64))
    data_dir: Mapped[str | None] = mapped_column(Text)
    space: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]  # the TrainConfig's fields (TrainConfig.to_dict())
    checkpoint: Mapped[str] = mapped_column(Text, default="")  # the run's checkpoint file
    loader: Mapped[str] = mapped_column(String(16), default="memory")  # memory or stream
    status: Mapped[str] = mapped_column(String(32), default="created")
    steps: Mapped[int] = mapped_column(default=0)
    seconds: Mapped[float] = mapped_column(default=0.0)
    val_acc_largest: Mapped[float | None]
    val_acc_smallest: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    epochs: Mapped[list[EpochMetric]] = relationship(
        back_populates="run", order_by="EpochMetric.epoch"
    )
    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="run", order_by="Checkpoint.step"
    )


class EpochMetric(Base):
    """Training metrics of one epoch of a run."""

    __tablename__ = "hwnas_epoch_metrics"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hwnas_runs.id", ondelete="CASCADE"))
    epoch: Mapped[int]
    step: Mapped[int]
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    run: Mapped[Run] = relationship(back_populates="epochs")


class Checkpoint(Base):
    """A checkpoint file of a run, with its content hash."""

    __tablename__ = "hwnas_checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hwnas_runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    run: Mapped[Run] = relationship(back_populates="checkpoints")


class Space(Base):
    """A search space whose subnets were measured, by its key (`SearchSpace.key`): latency
    measurements and predictors belong to a (space, target) pair, whichever run (if any)
    supplied the weights."""

    __tablename__ = "hwnas_spaces"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    space: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Target(Base):
    """A runtime plus its settings on one piece of hardware (identity = `key`)."""

    __tablename__ = "hwnas_targets"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]]
    fingerprint: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Measurement(Base):
    """One latency measurement of one subnet (or, for lookup tables, one layer alone) on one
    target, with the protocol's spread and the fingerprint of the machine that measured it."""

    __tablename__ = "hwnas_measurements"
    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("hwnas_targets.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("hwnas_runs.id"))
    space_key: Mapped[str | None] = mapped_column(String(16), index=True)
    subnet_key: Mapped[str] = mapped_column(String(400), index=True)
    subnet: Mapped[dict[str, Any]]
    kind: Mapped[str] = mapped_column(String(16), default="subnet")
    # "trained" (the run's weights) or "init" (initialised; int8 calibrated on synthetic inputs)
    weights: Mapped[str] = mapped_column(String(16), default="trained")
    median_ms: Mapped[float]
    cv: Mapped[float]
    iqr_ms: Mapped[float]
    n_reps: Mapped[int]
    remeasured: Mapped[bool] = mapped_column(default=False)
    fingerprint: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Predictor(Fitted, Base):
    """A fitted latency predictor of a (space, target) pair (`hwnas.latency.predictor`)."""

    __tablename__ = "hwnas_predictors"
    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("hwnas_targets.id"))
    space_key: Mapped[str | None] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(64))


class Search(Base):
    """One architecture search (an Optuna study of the same name)."""

    __tablename__ = "hwnas_searches"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hwnas_runs.id"))
    study_name: Mapped[str] = mapped_column(String(200))
    targets: Mapped[list[Any]]  # the latency targets minimised (keys such as tflite-fp32-t1)
    objectives: Mapped[list[Any]] = mapped_column(default=list)  # also minimised: params, macs
    budgets: Mapped[dict[str, Any]]
    sampler: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int | None]
    # how it was asked for, as `hwnas search` flags take it: margin, initial, rounds,
    # round_trials, measure (what `hwnas report` prints to reproduce it)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32), default="created")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    candidates: Mapped[list[Candidate]] = relationship(back_populates="search")
    rounds: Mapped[list[SearchRound]] = relationship(
        back_populates="search", order_by="SearchRound.round"
    )


class SearchRound(Base):
    """One round of a search's closed loop: the Optuna study it ran in (round 0's has the
    search's name, round N's `SEARCH~rN`), the predictor that scored its trials per target,
    and, once its front was measured, how the measurements agreed with the predictions."""

    __tablename__ = "hwnas_search_rounds"
    __table_args__ = (UniqueConstraint("search_id", "round"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("hwnas_searches.id", ondelete="CASCADE"))
    round: Mapped[int]
    study_name: Mapped[str] = mapped_column(String(240))
    predictors: Mapped[dict[str, Any]]  # target key -> hwnas_predictors.id
    # the accuracy predictor that scored the round's trials (None: the supernet did)
    accuracy_predictor: Mapped[int | None]
    trials: Mapped[int]  # the study's finished trials this round ends at
    agreement: Mapped[dict[str, Any] | None]  # target key -> front vs measurement
    # a predictor-driven round's front re-scored with the supernet: subnets evaluated then,
    # the front's size and subnet keys, and how many were not on the previous round's front
    # (0: settled; `hwnas.search.services.rounds.record_accuracy_front`)
    accuracy_front: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    search: Mapped[Search] = relationship(back_populates="rounds")


class Candidate(Base):
    """A subnet evaluated by a search trial. `predicted_ms` is by the newest round's
    predictors (`scored_round`); what the trial's own round predicted stays in its study."""

    __tablename__ = "hwnas_candidates"
    __table_args__ = (UniqueConstraint("search_id", "trial_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("hwnas_searches.id", ondelete="CASCADE"))
    trial_number: Mapped[int]
    subnet_key: Mapped[str] = mapped_column(String(400))
    subnet: Mapped[dict[str, Any]]
    accuracy: Mapped[float]  # what drove the search: the supernet's, or the accuracy predictor's
    # the supernet's (BN recalibrated, validation split): every trial of a supernet-driven
    # search, the front of a predictor-driven one
    accuracy_supernet: Mapped[float | None]
    params: Mapped[int]
    macs: Mapped[int]
    predicted_ms: Mapped[dict[str, Any]]
    measured_ms: Mapped[dict[str, Any] | None]
    # targets whose prediction left the predictor's fitted range (`Predictor.extrapolated`)
    extrapolated: Mapped[list[Any]] = mapped_column(default=list)
    round: Mapped[int] = mapped_column(default=0)  # the round whose study ran the trial
    scored_round: Mapped[int] = mapped_column(default=0)  # the round whose predictor scored it
    feasible: Mapped[bool] = mapped_column(default=True)
    pareto: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    search: Mapped[Search] = relationship(back_populates="candidates")


class AccuracySample(Base):
    """A subnet's supernet accuracy (BN recalibrated, validation split, and each half of it),
    evaluated at the run's `step` for fitting (`role` train), judging (held-out) or re-scoring
    a search's front (front) an accuracy predictor."""

    __tablename__ = "hwnas_accuracy_samples"
    __table_args__ = (UniqueConstraint("run_id", "step", "subnet_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hwnas_runs.id", ondelete="CASCADE"))
    step: Mapped[int]  # the run's training steps when evaluated (its weights' version)
    subnet_key: Mapped[str] = mapped_column(String(400))
    subnet: Mapped[dict[str, Any]]
    accuracy: Mapped[float]
    halves: Mapped[list[Any]]  # accuracy on the validation split's even and odd images
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccuracyPredictor(Fitted, Base):
    """A fitted predictor of a run's supernet accuracy at the run's `step`
    (`hwnas.search.accuracy_predictor`)."""

    __tablename__ = "hwnas_accuracy_predictors"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hwnas_runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    space_key: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))


class Export(Base):
    """A subnet exported to a .tflite file, with the proof that it matches."""

    __tablename__ = "hwnas_exports"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hwnas_runs.id"))
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("hwnas_candidates.id"))
    subnet: Mapped[dict[str, Any]]
    precision: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int]
    proof: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

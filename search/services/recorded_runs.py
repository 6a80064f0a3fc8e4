"""A recorded run: find it by name, its dataset as it was trained on, and one of its subnets
(`hwnas subnet`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hwnas.db.models import Run
from hwnas.db.run_store import find_run, run_names
from hwnas.db.session import Database, open_db
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.data import DataError, Dataset, load_dataset
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig

if TYPE_CHECKING:
    from hwnas.supernet.batch_accuracy import AccuracyOracle, OracleInputs


def load_run(db: Database, name: str) -> Run:
    """The finished run `name`, detached from its session."""
    run = find_run(db, name)
    if run is None:
        names = run_names(db)
        known = f"; runs here: {', '.join(names)}" if names else "; run `hwnas train` first"
        raise UserError(f"no run named {name!r} in this database{known}")
    if run.status != "finished":
        raise UserError(f"run {name!r} is {run.status}; finish it with `hwnas train --resume`")
    return run


@dataclass(frozen=True, eq=False)
class RunRecord:
    """A finished run as recorded: its row, and its space and training config parsed once."""

    row: Run
    space: SearchSpace
    config: TrainConfig

    @classmethod
    def of(cls, run: Run) -> RunRecord:
        return cls(run, SearchSpace.from_dict(run.space), TrainConfig.from_dict(run.config))

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def checkpoint(self) -> str:
        return self.row.checkpoint


def load_run_record(db: Database, name: str) -> RunRecord:
    """The finished run `name` with its space and config parsed (`load_run`'s errors)."""
    return RunRecord.of(load_run(db, name))


def _record(run: Run | RunRecord) -> RunRecord:
    return run if isinstance(run, RunRecord) else RunRecord.of(run)


def parse_subnet(space: SearchSpace, subnet_json: str | None, random_seed: int | None) -> Subnet:
    """The subnet given as JSON, or sampled with `random_seed`: exactly one of the two."""
    if (subnet_json is None) == (random_seed is None):
        raise UserError("give exactly one of subnet_json and random_seed")
    if subnet_json is not None:
        return space.subnet_from_json(subnet_json)
    return space.sample(np.random.default_rng(random_seed))


@dataclass(frozen=True)
class SubnetInfo(Result):
    """One subnet of a run: its validation accuracy with the supernet's weights (BN
    recalibrated), parameters, multiply-accumulates and FLOPs (2 per MAC)."""

    subnet: Subnet
    key: str
    params: int
    macs: int
    flops: int
    val_acc: float


def subnet_info(
    db_url: str | None, run_name: str, subnet_json: str | None, random_seed: int | None
) -> SubnetInfo:
    """Accuracy (supernet weights, BN recalibrated), params and FLOPs of one subnet, given as
    JSON or sampled with `random_seed`."""
    with open_db(db_url, create=False) as db:
        run = load_run_record(db, run_name)
    subnet = parse_subnet(run.space, subnet_json, random_seed)
    from hwnas.supernet.train_loop import load_variables, subnet_val_accuracy

    enable_compile_cache()
    data = run_dataset(run)
    variables = load_variables(run.space, run.checkpoint)
    cost = run.space.cost(subnet)
    return SubnetInfo(
        subnet=subnet,
        key=subnet.key,
        params=cost.params,
        macs=cost.macs,
        flops=2 * cost.macs,
        val_acc=subnet_val_accuracy(run.space, variables, data, subnet, run.config),
    )


MIN_IMAGE_SIZE = 32  # folder images are decoded at least this large (as before presets)


def image_size_for(space: SearchSpace) -> int:
    """The side a folder dataset's images are decoded at: the space's largest resolution."""
    return max(MIN_IMAGE_SIZE, space.resolutions[-1])


def run_dataset(run: Run | RunRecord) -> Dataset:
    """The dataset of a recorded run, split and sized as it was for training (a streamed
    folder: its recalibration pool and validation images, `feed.streamed_dataset`)."""
    record = _record(run)
    row, seed = record.row, record.config.seed
    size = image_size_for(record.space)
    try:
        if row.loader == "stream":
            from hwnas.search.services.feed_choice import streamed_dataset

            return streamed_dataset(row.data_dir, size, seed)
        return load_dataset(row.dataset, row.data_dir, seed=seed, image_size=size)
    except DataError as e:  # the run's recorded data, not a setting of this command
        raise UserError(f"run {row.name!r} cannot read the data it was trained on: {e}") from None


def oracle_for(run: Run | RunRecord) -> AccuracyOracle:
    """The supernet accuracy oracle of a finished run (`supernet/batch_accuracy.py`), compiled for
    every resolution; kept for the process's later calls on the same run."""
    key = (run.name, run.checkpoint)
    if key not in _ORACLES:
        _ORACLES.clear()
        _ORACLES[key] = _oracle(run)
    return _ORACLES[key]


_ORACLES: dict[tuple[str, str], AccuracyOracle] = {}


def _oracle(run: Run | RunRecord) -> AccuracyOracle:
    from hwnas.supernet.batch_accuracy import AccuracyOracle

    enable_compile_cache()
    record = _record(run)
    oracle = AccuracyOracle(record.space, oracle_inputs(record))
    oracle.warm_up()
    return oracle


def oracle_inputs(run: Run | RunRecord) -> OracleInputs:
    """What the run's accuracy oracle needs: its weights (read from its checkpoint, verified
    by its hash), BN calibration batches and validation split, as it was trained."""
    from hwnas.supernet.batch_accuracy import OracleInputs
    from hwnas.supernet.train_loop import load_variables

    record = _record(run)
    variables = load_variables(record.space, record.checkpoint)
    return OracleInputs.of(variables, run_dataset(record), record.config)

"""A recorded run: find it by name, its dataset as it was trained on, and one of its subnets
(`hwnas subnet`)."""

from __future__ import annotations

import numpy as np
from hwnas.db.models import Run
from hwnas.db.session import Database, open_db
from hwnas.search.output import UserError
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.data import DataError, Dataset, load_dataset
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig
from sqlalchemy import select


def load_run(db: Database, name: str) -> Run:
    """The finished run `name`, detached from its session."""
    with db.read() as s:
        run = s.scalars(select(Run).where(Run.name == name)).one_or_none()
        if run is None:
            names = s.scalars(select(Run.name).order_by(Run.id)).all()
            known = f"; runs here: {', '.join(names)}" if names else "; run `hwnas train` first"
            raise UserError(f"no run named {name!r} in this database{known}")
        s.expunge(run)
    if run.status != "finished":
        raise UserError(f"run {name!r} is {run.status}; finish it with `hwnas train --resume`")
    return run


def parse_subnet(space: SearchSpace, subnet_json: str | None, random_seed: int | None) -> Subnet:
    if (subnet_json is None) == (random_seed is None):
        raise UserError("give exactly one of --subnet JSON or --random --seed N")
    if subnet_json is not None:
        return space.subnet_from_json(subnet_json)
    return space.sample(np.random.default_rng(random_seed))


def subnet_info(
    db_url: str | None, run_name: str, subnet_json: str | None, random_seed: int | None
) -> dict:
    """Accuracy (supernet weights, BN recalibrated), params and FLOPs of one subnet."""
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
    space = SearchSpace.from_dict(run.space)
    subnet = parse_subnet(space, subnet_json, random_seed)
    from hwnas.supernet.train_loop import load_variables, subnet_val_accuracy

    enable_compile_cache()
    config = TrainConfig.from_dict(run.config)
    data = run_dataset(run)
    variables = load_variables(space, run.checkpoint)
    cost = space.cost(subnet)
    return {
        "subnet": subnet.to_dict(),
        "key": subnet.key,
        "params": cost.params,
        "macs": cost.macs,
        "flops": 2 * cost.macs,
        "val_acc": subnet_val_accuracy(space, variables, data, subnet, config),
    }


MIN_IMAGE_SIZE = 32  # folder images are decoded at least this large (as before presets)


def image_size_for(space: SearchSpace) -> int:
    """The side a folder dataset's images are decoded at: the space's largest resolution."""
    return max(MIN_IMAGE_SIZE, space.resolutions[-1])


def run_dataset(run: Run) -> Dataset:
    """The dataset of a recorded run, split and sized as it was for training (a streamed
    folder: its recalibration pool and validation images, `feed.streamed_dataset`)."""
    space = SearchSpace.from_dict(run.space)
    seed = run.config.get("seed", 0)
    size = image_size_for(space)
    try:
        if run.loader == "stream":
            from hwnas.search.services.feed_choice import streamed_dataset

            return streamed_dataset(run.data_dir, size, seed)
        return load_dataset(run.dataset, run.data_dir, seed=seed, image_size=size)
    except DataError as e:  # the run's recorded data, not a setting of this command
        raise UserError(f"run {run.name!r} cannot read the data it was trained on: {e}") from None


def oracle_for(run: Run):
    """The supernet accuracy oracle of a finished run (`supernet/batch_accuracy.py`), compiled for
    every resolution; kept for the process's later calls on the same run."""
    key = (run.name, run.checkpoint)
    if key not in _ORACLES:
        _ORACLES.clear()
        _ORACLES[key] = _oracle(run)
    return _ORACLES[key]


_ORACLES: dict = {}


def _oracle(run: Run):
    from hwnas.supernet.batch_accuracy import AccuracyOracle
    from hwnas.supernet.train_loop import load_variables

    enable_compile_cache()
    space = SearchSpace.from_dict(run.space)
    config = TrainConfig.from_dict(run.config)
    oracle = AccuracyOracle(space, load_variables(space, run.checkpoint), run_dataset(run), config)
    oracle.warm_up()
    return oracle

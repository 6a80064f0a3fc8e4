"""Weight sharing check: inherited accuracy against training from scratch, 5 subnets.

Run after `hwnas train` (default run `digits` in ./hwnas.db):

    python bench/weight_sharing.py [--db URL] [--run NAME] [--out FILE]

For 5 subnets spread over the space (smallest, largest and the MAC quartiles of 200 random
samples) it prints the validation accuracy each inherits from the supernet (after BatchNorm
recalibration) beside the accuracy of the same subnet trained alone from scratch with the same
budget: the run's epochs, batch size, optimiser and schedule, on the subnet's own resolution.
Goal: mean absolute gap <= 1.5 points. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from hwnas.db.session import open_db
from hwnas.search.output import show_logs
from hwnas.search.services.recorded_runs import load_run, run_dataset
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.evaluate import Evaluator, resized_calibration
from hwnas.supernet.model import SuperNet, arch_arrays, stack_archs
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_loop import load_variables, subnet_val_accuracy
from hwnas.supernet.train_step import (
    TrainConfig,
    create_train_state,
    epoch_batches,
    make_optimizer,
    make_train_step,
    resize_images,
)


def spread_subnets(space: SearchSpace, seed: int = 0) -> list[Subnet]:
    rng = np.random.default_rng(seed)
    pool = sorted((space.sample(rng) for _ in range(200)), key=lambda s: space.cost(s).macs)
    quartiles = [pool[int(q * (len(pool) - 1))] for q in (0.25, 0.5, 0.75)]
    return [space.smallest(), *quartiles, space.largest()]


def train_from_scratch(space, data, config: TrainConfig, subnet: Subnet) -> float:
    """Train only `subnet` (fresh weights, same budget as the supernet run)."""
    net = SuperNet(space)
    steps = len(data.y_train) // config.batch_size
    tx = make_optimizer(config, steps)
    state = create_train_state(net, tx, config.seed + 1)
    step_fn = make_train_step(net, tx)
    images = resize_images(data.x_train, subnet.resolution)
    archs = stack_archs([arch_arrays(space, subnet)])
    for epoch in range(config.epochs):
        for idx in epoch_batches(len(data.y_train), config, epoch):
            state, _ = step_fn(state, images[idx], data.y_train[idx], archs)
    ev = Evaluator.for_net(net)
    calib = resized_calibration(data.x_train, subnet.resolution, config)
    val = resize_images(data.x_val, subnet.resolution)
    return ev.subnet_accuracy(
        state.params, state.batch_stats, archs_one(archs), calib, val, data.y_val
    )


def archs_one(archs):
    return type(archs)(*(a[0] for a in archs))


def main() -> None:
    show_logs()  # the services' progress on stderr, as the CLI shows it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None)
    parser.add_argument("--run", default="digits")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    enable_compile_cache()
    db = open_db(args.db, create=False)
    run = load_run(db, args.run)
    db.dispose()
    space = SearchSpace.from_dict(run.space)
    config = TrainConfig.from_dict(run.config)
    data = run_dataset(run)
    variables = load_variables(space, run.checkpoint)
    rows = []
    for subnet in spread_subnets(space):
        t0 = time.perf_counter()
        inherited = subnet_val_accuracy(space, variables, data, subnet, config)
        scratch = train_from_scratch(space, data, config, subnet)
        rows.append(
            {
                "key": subnet.key,
                "macs": space.cost(subnet).macs,
                "inherited": inherited,
                "scratch": scratch,
                "gap_points": 100 * (inherited - scratch),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(
            f"{subnet.key[:60]:60s} macs {rows[-1]['macs']:>10,d} inherited {inherited:.4f} "
            f"scratch {scratch:.4f} gap {rows[-1]['gap_points']:+.2f} pt",
            file=sys.stderr,
        )
    result = {
        "run": args.run,
        "epochs": config.epochs,
        "subnets": rows,
        "mean_abs_gap_points": float(np.mean([abs(r["gap_points"]) for r in rows])),
        "mean_gap_points": float(np.mean([r["gap_points"] for r in rows])),
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""The measurements `bench/predictor_transfer.py` learns from: the same subnets of one space
measured on several of this machine's targets, under the protocol of `hwnas measure`, written
as one file in the import format (`hwnas measure --import`), each line naming its target.

    python bench/transfer_measure.py --space ofa-mbv3 --n 160 --work DIR \
        --targets tflite-fp32-t1,tflite-fp32-t2,tflite-int8-t1,tflite-int8-t2,cpu
    python bench/transfer_measure.py --space ofa-mbv3 --n 160 --work DIR --targets cpu-b32 \
        --passes 1 --warmup 2 --per-round 3 --min-reps 3 --max-ms 1500

Prepare beside other work (`--prepare-only`), then measure with nothing else running.
Resumable: models are prepared one at a time and measured a hundred at a time into `--work`
(`latency/workdir.py`), so a stopped run continues where it stopped. A tflite model converted
for one thread count serves the others (the threads are the interpreter's setting, not the
file's). Every run rewrites DIR/measurements.jsonl from all that the folder holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from pathlib import Path

from hwnas.latency.drift import N_REFS
from hwnas.latency.jobs import Job, parse_job, parse_result
from hwnas.latency.prepare import JobBuilder
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.workdir import BATCH, TargetWork, read_complete
from hwnas.search.output import show_logs
from hwnas.search.services.measuring import sample_subnets
from hwnas.search.services.model_source import SpaceContext
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.space import load_space

BATCHED = 20  # jobs measured (and their runners held) at once for a batched target
PROTOCOL_FLAGS = ("warmup", "per_round", "passes", "min_reps", "max_reps", "max_ms")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sibling_job(work: Path, target: Target, subnet_key: str) -> Job | None:
    """A tflite job of the same model prepared for another thread count, if there is one."""
    if target.kind != "tflite":
        return None
    for path in sorted(work.glob(f"jobs-tflite-{target.precision}-t*.jsonl")):
        for job in read_complete(path, parse_job):
            if job.subnet_key == subnet_key and job.kind == "subnet":
                return job
    return None


def builder_for(ctx: SpaceContext, target: Target, tw: TargetWork, work: Path):
    jobs = JobBuilder(ctx.space, ctx.variables, target, tw.models, ctx.representative,
                      ctx.name, ctx.weights)  # fmt: skip

    def build(kind: str, subnet) -> Job:
        other = sibling_job(work, target, subnet.key)
        if other is not None:
            return dataclasses.replace(other, id=uuid.uuid4().hex, target=target)
        return jobs.subnet_job(subnet)

    return build


def measure_target(
    ctx: SpaceContext, target: Target, subnets, work: Path, protocol, prepare_only: bool
) -> None:
    tw = TargetWork(work, target)
    wanted = [("subnet", s, s.key) for s in subnets]
    jobs = tw.prepare(wanted, builder_for(ctx, target, tw, work), log)
    if not prepare_only:  # a batched target's runners are large: 100 at batch 32 held 9 GB
        per_batch = BATCHED if target.batch > 1 else BATCH
        tw.measure("all", jobs, jobs[:N_REFS], protocol, log, per_batch)


def write_file(work: Path, space_key: str) -> int:
    """DIR/measurements.jsonl from every target's results in the folder; lines written."""
    lines = []
    for path in sorted(work.glob("results-*-all.jsonl")):
        for r in read_complete(path, parse_result):
            if r.kind != "subnet" or r.space != space_key:
                continue
            row = {
                "target": r.target.key,
                "subnet": r.subnet,
                "latency_ms": r.stats["median_ms"],
                "spread": r.stats["iqr_ms"],
                "batch": r.target.batch,
            }
            lines.append(json.dumps(row))
    out = work / "measurements.jsonl"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(out)
    return len(lines)


def main() -> None:
    show_logs()
    args = parse_args()
    enable_compile_cache()
    space = load_space(args.space)
    ctx = SpaceContext(space)
    subnets = sample_subnets(space, args.n, args.seed, spread=0.5)
    protocol = Protocol(**{k: getattr(args, k) for k in PROTOCOL_FLAGS})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for key in args.targets.split(","):
        log(f"{key}: {len(subnets)} subnets of {space.name}")
        measure_target(ctx, Target.parse(key), subnets, work, protocol, args.prepare_only)
        n = write_file(work, space.key)
        log(f"{work / 'measurements.jsonl'}: {n} measurements")
    print(json.dumps({"file": str(work / "measurements.jsonl"), "lines": n}))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="ofa-mbv3")
    p.add_argument("--n", type=int, default=160, help="subnets (the same on every target)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", required=True, help="comma-separated target keys")
    p.add_argument("--work", required=True, help="resumable work folder")
    p.add_argument(
        "--prepare-only", action="store_true",
        help="prepare the models only (beside other work); measure later on a quiet machine",
    )  # fmt: skip
    for name in PROTOCOL_FLAGS:
        default = getattr(Protocol, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    return p.parse_args()


if __name__ == "__main__":
    main()

"""`hwnas export`: a subnet (a search candidate, or any subnet of a run) shipped as `.tflite`,
with the proof that it matches and measures as predicted, printed and stored.

The proof: LiteRT's op list (builtin ops only; the converter refuses anything else); the
largest logit difference between JAX and LiteRT on the validation images; both accuracies on
the validation split; the latency measured under `hwnas measure`'s protocol beside the
predictor's; size and sha256. The input contract (shape, dtype, quantisation, preprocessing
from raw pixels) goes into the result and into a sidecar `FILE.json` beside `FILE.tflite`.
Paths are checked before the work and both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hwnas.db.models import Candidate, Export, Run, Search
from hwnas.db.session import Database, open_db
from hwnas.search.output import UserError
from hwnas.search.services.export_latency import latency, latency_target
from hwnas.search.services.files import check_destination, write_new
from hwnas.search.services.recorded_runs import load_run, run_dataset
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.convert import PRECISIONS
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig

logger = logging.getLogger(__name__)

REPRESENTATIVE = 200  # training images that calibrate int8 quantisation


@dataclass(frozen=True)
class ExportRequest:
    out: str
    candidate: int | None = None
    run: str | None = None
    subnet: str | None = None
    precision: str = "fp32"
    int8_io: bool = False
    threads: int = 1
    force: bool = False
    measure: bool = True

    def check(self) -> None:
        if (self.candidate is None) == (self.run is None):
            raise UserError("give exactly one of --candidate ID or --run NAME --subnet JSON")
        if self.run is not None and self.subnet is None:
            raise UserError("--run needs --subnet JSON (the subnet to export)")
        if self.candidate is not None and self.subnet is not None:
            raise UserError("--subnet goes with --run; a candidate already names its subnet")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.int8_io and self.precision != "int8":
            raise UserError("--int8-io needs --precision int8")
        if not 1 <= self.threads <= 256:
            raise UserError(f"--threads must be between 1 and 256, got {self.threads}")


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def export(db_url: str | None, req: ExportRequest) -> dict:
    req.check()
    dest = check_destination(req.out, req.force, ".tflite")
    check_destination(sidecar(dest), req.force)
    with open_db(db_url, create=False) as db:
        run, subnet, candidate_id = resolve(db, req)
        result = build(db, run, subnet, req)
        write_new(dest, result.pop("flatbuffer"), req.force)
        result = {"path": str(dest), "sidecar": str(sidecar(dest))} | result
        write_new(sidecar(dest), _sidecar_text(result, run, candidate_id), req.force)
        result["export"] = _store(db, run, candidate_id, subnet, req, result)
        return result


def resolve(db: Database, req: ExportRequest) -> tuple[Run, Subnet, int | None]:
    """The run and subnet to export (from a candidate or from --run/--subnet)."""
    if req.candidate is None:
        run = load_run(db, req.run)
        return run, SearchSpace.from_dict(run.space).subnet_from_json(req.subnet), None
    with db.read() as s:
        cand = s.get(Candidate, req.candidate)
        if cand is None:
            raise UserError(
                f"no candidate {req.candidate} in this database; "
                "`hwnas pareto SEARCH` lists a search's candidates"
            )
        search = s.get(Search, cand.search_id)
        run_name = s.get(Run, search.run_id).name
        subnet_dict = dict(cand.subnet)
    run = load_run(db, run_name)
    return run, SearchSpace.from_dict(run.space).subnet_from_dict(subnet_dict), req.candidate


def build(db: Database, run: Run, subnet: Subnet, req: ExportRequest) -> dict:
    """Convert, prove and measure; the flatbuffer is returned under `flatbuffer`."""
    from hwnas.latency.litert_infer import litert_io, litert_logits
    from hwnas.supernet.convert import to_tflite
    from hwnas.supernet.deploy import input_contract, jax_logits, recalibrated_standalone
    from hwnas.supernet.train_loop import load_variables
    from hwnas.supernet.train_step import resize_images

    enable_compile_cache()
    space = SearchSpace.from_dict(run.space)
    config = TrainConfig.from_dict(run.config)
    data = run_dataset(run)
    logger.info(f"export: recalibrating BatchNorm for {subnet.key}")
    variables = load_variables(space, run.checkpoint)
    module, sv = recalibrated_standalone(space, variables, subnet, data.x_train, config)
    r = subnet.resolution
    rep = None
    if req.precision == "int8":
        idx = np.random.default_rng((config.seed, 5)).permutation(len(data.x_train))
        rep = list(resize_images(data.x_train[idx[:REPRESENTATIVE]], r))
    logger.info(f"export: converting to TFLite ({req.precision})")
    model = to_tflite(space, subnet, sv, req.precision, rep, req.int8_io, module).flatbuffer
    val = resize_images(data.x_val, r)
    logger.info(f"export: checking {len(val)} validation images in JAX and LiteRT")
    ref, got = jax_logits(module, sv, val), litert_logits(model, val)
    io = litert_io(model)
    out = {
        "subnet": subnet.to_dict(),
        "key": subnet.key,
        "precision": req.precision,
        "sha256": hashlib.sha256(model).hexdigest(),
        "bytes": len(model),
        "ops": _ops(model),
        "input": input_contract(space, subnet, io, data.class_names),
        "max_abs_diff": float(np.max(np.abs(ref - got))),
        "n_val": len(val),
        "val_acc_jax": _acc(ref, data.y_val),
        "val_acc_tflite": _acc(got, data.y_val),
    }
    out["acc_drop_points"] = 100 * (out["val_acc_jax"] - out["val_acc_tflite"])
    target = latency_target(req.precision, req.threads)
    out |= latency(db, run, subnet, model, target, req.measure)
    return out | {"flatbuffer": model}


def _acc(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, -1) == y))


def _ops(model: bytes) -> list[str]:
    from hwnas.latency.runners import tflite_ops

    return tflite_ops(model)


def _sidecar_text(result: dict, run: Run, candidate_id: int | None) -> bytes:
    keep = ("subnet", "key", "precision", "sha256", "bytes", "ops", "input")
    doc = {"model": Path(result["path"]).name, "run": run.name, "candidate": candidate_id}
    doc |= {k: result[k] for k in keep}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _store(db: Database, run: Run, candidate_id, subnet: Subnet, req, result: dict) -> int:
    skip = ("path", "sidecar", "subnet", "sha256", "bytes", "precision")
    with db.write() as s:
        row = Export(
            run_id=run.id,
            candidate_id=candidate_id,
            subnet=subnet.to_dict(),
            precision=req.precision + ("-int8io" if req.int8_io else ""),
            path=result["path"],
            sha256=result["sha256"],
            bytes=result["bytes"],
            proof={k: v for k, v in result.items() if k not in skip},
        )
        s.add(row)
        s.flush()
        return row.id

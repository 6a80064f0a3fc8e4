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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.db.export_store import candidate_origin, record_export
from hwnas.db.models import Export, Run
from hwnas.db.session import Database, open_db
from hwnas.extras import require
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.search.services.export_latency import (
    LatencyCheck,
    elsewhere,
    latency,
    latency_target,
)
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
    """What to export: a candidate, or a run's subnet (JSON); where to, and how."""

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
            raise UserError("give exactly one of {field} or run (with subnet)", field="candidate")
        if self.run is not None and self.subnet is None:
            raise UserError("{field} is needed with run (the subnet to export)", field="subnet")
        if self.candidate is not None and self.subnet is not None:
            raise UserError("{field} goes with run; a candidate names its subnet", field="subnet")
        if self.precision not in PRECISIONS:
            raise UserError(f"{{field}} must be one of {', '.join(PRECISIONS)}", field="precision")
        if self.int8_io and self.precision != "int8":
            raise UserError("{field} needs precision int8", field="int8_io")
        if not 1 <= self.threads <= 256:
            raise UserError(
                f"{{field}} must be between 1 and 256, got {self.threads}", field="threads"
            )


@dataclass(frozen=True)
class ExportProof(Result):
    """What the exported file is and the proof that it matches: its ops (builtins only), the
    largest logit difference between JAX and LiteRT on `n_val` validation images, both
    accuracies, and its latency (flattened into the JSON object)."""

    subnet: Subnet
    key: str
    precision: str
    sha256: str
    bytes: int
    ops: tuple[str, ...]
    input: Mapping[str, Any]
    max_abs_diff: float
    n_val: int
    val_acc_jax: float
    val_acc_tflite: float
    acc_drop_points: float
    latency: LatencyCheck
    predicted_ms_by_target: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        return out | out.pop("latency")


@dataclass(frozen=True)
class ExportResult(Result):
    """`hwnas export`'s result: the files written, the proof, and the export's id."""

    path: str
    sidecar: str
    proof: ExportProof
    export: int

    def to_json(self) -> dict[str, Any]:
        head = {"path": self.path, "sidecar": self.sidecar}
        return head | self.proof.to_json() | {"export": self.export}


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def export(db_url: str | None, req: ExportRequest) -> ExportResult:
    require("export", "hwnas export")
    req.check()
    dest = check_destination(req.out, req.force, ".tflite")
    check_destination(sidecar(dest), req.force)
    with open_db(db_url, create=False) as db:
        run, subnet, candidate_id, predicted = resolve(db, req)
        proof, model = build(db, run, subnet, req, predicted)
        write_new(dest, model, req.force)
        doc = _sidecar_text(proof, dest.name, run.name, candidate_id)
        write_new(sidecar(dest), doc, req.force)
        row = _row(run, candidate_id, req, str(dest), proof)
        return ExportResult(str(dest), str(sidecar(dest)), proof, record_export(db, row))


def resolve(db: Database, req: ExportRequest) -> tuple[Run, Subnet, int | None, dict[str, float]]:
    """The run and subnet to export (from a candidate or from run and subnet), and for a
    candidate its latency as its search last predicted it on each of the search's targets."""
    if req.candidate is None:
        assert req.run is not None and req.subnet is not None  # req.check()
        run = load_run(db, req.run)
        return run, SearchSpace.from_dict(run.space).subnet_from_json(req.subnet), None, {}
    origin = candidate_origin(db, req.candidate)
    if origin is None:
        raise UserError(
            f"no candidate {req.candidate} in this database; "
            "`hwnas pareto SEARCH` lists a search's candidates"
        )
    run = load_run(db, origin.run)
    subnet = SearchSpace.from_dict(run.space).subnet_from_dict(origin.subnet)
    return run, subnet, req.candidate, origin.predicted_ms


def build(
    db: Database,
    run: Run,
    subnet: Subnet,
    req: ExportRequest,
    predicted: Mapping[str, float] | None = None,
) -> tuple[ExportProof, bytes]:
    """Convert, prove and measure: the proof and the flatbuffer. `predicted`: the subnet's
    latency on its search's targets, reported as `predicted_ms_by_target`."""
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
    acc_jax, acc_tflite = _acc(ref, data.y_val), _acc(got, data.y_val)
    target = latency_target(req.precision, req.threads)
    proof = ExportProof(
        subnet=subnet,
        key=subnet.key,
        precision=req.precision,
        sha256=hashlib.sha256(model).hexdigest(),
        bytes=len(model),
        ops=tuple(_ops(model)),
        input=input_contract(space, subnet, litert_io(model), data.class_names),
        max_abs_diff=float(np.max(np.abs(ref - got))),
        n_val=len(val),
        val_acc_jax=acc_jax,
        val_acc_tflite=acc_tflite,
        acc_drop_points=100 * (acc_jax - acc_tflite),
        latency=latency(db, run, subnet, model, target, req.measure),
        predicted_ms_by_target=elsewhere(dict(predicted or {}), space.key),
    )
    return proof, model


def _acc(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, -1) == y))


def _ops(model: bytes) -> list[str]:
    from hwnas.latency.runners import tflite_ops

    return tflite_ops(model)


def _sidecar_text(proof: ExportProof, model: str, run: str, candidate_id: int | None) -> bytes:
    keep = ("subnet", "key", "precision", "sha256", "bytes", "ops", "input")
    doc: dict[str, Any] = {"model": model, "run": run, "candidate": candidate_id}
    doc |= {k: v for k, v in proof.to_json().items() if k in keep}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _row(run: Run, candidate_id: int | None, req: ExportRequest, path: str, proof: ExportProof):
    """The export's database row; its stored proof is the JSON less what has a column."""
    skip = ("subnet", "sha256", "bytes", "precision")
    return Export(
        run_id=run.id,
        candidate_id=candidate_id,
        subnet=proof.subnet.to_dict(),
        precision=req.precision + ("-int8io" if req.int8_io else ""),
        path=path,
        sha256=proof.sha256,
        bytes=proof.bytes,
        proof={k: v for k, v in proof.to_json().items() if k not in skip},
    )

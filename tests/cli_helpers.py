"""Running `hwnas` as a user does (a subprocess per command) on the tiny test space."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

TINY = str(Path(__file__).parent / "data" / "tiny_space.json")


SHARED_CACHE = "HWNAS_TEST_JAX_CACHE"


def cli_env(cwd: Path) -> dict[str, str]:
    """The environment of an `hwnas` subprocess: XLA's compilation cache shared by the whole
    test session where conftest set one (the tiny space's models recompile in every test
    otherwise: most of a tiny training's 50 s on 2 cores), else one per working directory.
    A user's HWNAS_DB is left out: a command without --db uses ./hwnas.db in `cwd`."""
    env = {k: v for k, v in os.environ.items() if k != "HWNAS_DB"}
    return env | {"HWNAS_JAX_CACHE": os.environ.get(SHARED_CACHE, str(cwd / "jaxcache"))}


def hwnas(
    *args: str, cwd: Path, check: bool = True, process: bool = False
) -> subprocess.CompletedProcess:
    """`hwnas ARGS` in `cwd`, its exit status, stdout and stderr. In this process (the CLI's
    `main`, with the working directory and environment a subprocess would get), which saves
    the 5-8 s of imports a fresh process pays on every command; in a subprocess of its own
    where the test needs one (`process=True`: several worker processes, a kill) or where
    HWNAS_TEST_SUBPROCESS=1 asks for every command to run as a user's shell runs it."""
    if process or os.environ.get("HWNAS_TEST_SUBPROCESS") == "1":
        env = cli_env(cwd)
        cmd = [sys.executable, "-m", "hwnas.search.cli", *args]
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    else:
        done = _in_process(list(args), cwd)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    from hwnas.search.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, env = dict(os.environ), os.getcwd(), cli_env(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:  # typer's --help and the like
                code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["hwnas", *args], code, out.getvalue(), err.getvalue())


def run_json(*args, cwd) -> dict:
    done = hwnas(*args, "--json", cwd=cwd)
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_args(name: str, url: str, epochs: int = 3) -> list[str]:
    return [
        "train", "--space", TINY, "--epochs", str(epochs), "--batch-size", "128",
        "--name", name, "--db", url, "--quiet", "--json",
    ]  # fmt: skip


def search_args(url: str, name: str, trials: int, *extra: str) -> list[str]:
    return [
        "search", "--run", "tiny", "--target", "tflite", "--trials", str(trials),
        "--name", name, "--seed", "0", "--no-measure", "--quiet", "--db", url, *extra,
    ]  # fmt: skip


def prepare(cwd, url: str) -> None:
    """A trained tiny run with a tflite predictor: what a search (and an export) needs."""
    hwnas(*train_args("tiny", url, epochs=1), cwd=cwd)
    hwnas(
        "measure", "--run", "tiny", "--target", "tflite", "--n", "20", "--no-noise-floor",
        "--db", url, cwd=cwd,
    )  # fmt: skip
    hwnas("predictor", "fit", "--target", "tflite", "--db", url, cwd=cwd)


def stored(url: str, model) -> list:
    """Every row of `model` (an hwnas table) in the database at `url`."""
    from sqlalchemy import select

    from hwnas.db.session import open_db

    with open_db(url, create=False) as db, db.read() as s:
        return list(s.scalars(select(model)))


KEY = "tflite-fp32-t1"  # the target of `prepare`'s predictor


def copy_db(url: str, path: Path) -> str:
    """A copy of the SQLite database at `url` at `path` (SQLite's backup API: consistent, the
    write-ahead log's pages included); returns its URL."""
    import sqlite3

    src, dst = sqlite3.connect(url.removeprefix("sqlite:///")), sqlite3.connect(path)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{path}"


def copy_rows(url: str, to: str) -> None:
    """The runs, measurements and predictors of the database at `url` (not its searches and
    exports) into a new one at `to` (any backend; PostgreSQL's id sequences moved past the
    copied rows): a prepared run on another database without training and measuring again."""
    from sqlalchemy import func, select, text

    from hwnas.db.models import Base
    from hwnas.db.session import open_db

    left_out = ("meta", "searches", "search_rounds", "candidates", "exports")

    src, dst = open_db(url, create=False), open_db(to)
    with src.engine.connect() as a, dst.engine.begin() as b:
        for table in Base.metadata.sorted_tables:
            rows = [dict(r._mapping) for r in a.execute(select(table))]
            if table.name.removeprefix("hwnas_") in left_out or not rows:
                continue
            b.execute(table.insert(), rows)
            if dst.engine.dialect.name == "postgresql" and "id" in table.c:
                top = b.scalar(select(func.max(table.c.id)))
                b.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                               f"{top})"))  # fmt: skip
    src.dispose()
    dst.dispose()


def halve(model: dict) -> dict:
    """The same latency predictor predicting half the latency."""
    from hwnas.latency.predictor import Predictor

    p = Predictor.from_dict(model)
    scaled = {
        k: [v / 2 for v in c] for k, c in p.coef.items() if k in ("physical", "table", "floor")
    }
    return Predictor(p.kind, p.space, p.coef | scaled).to_dict()


def fool(url: str, key: str = KEY) -> None:
    """Make the newest predictor of target `key` one that underestimates the device by 2x, so
    a measured front disagrees and the closed loop has to refit and continue."""
    from sqlalchemy import select

    from hwnas.db.models import Predictor as PredictorRow
    from hwnas.db.models import Target as TargetRow
    from hwnas.db.session import open_db
    from hwnas.latency.targets import Target
    from hwnas.search.services.prediction import load_predictor_row

    with open_db(url, create=False) as db:
        p, metrics = load_predictor_row(db, Target.parse(key))
        with db.write() as s:
            target_id = s.scalar(select(TargetRow.id).where(TargetRow.key == key))
            s.add(PredictorRow(target_id=target_id, space_key=p.space.key, kind="main",
                               n_train=0, metrics=metrics, model=halve(p.to_dict())))  # fmt: skip


def age_running_trials(url: str, study_name: str) -> int:
    """Make the RUNNING trials of a killed worker look older than the heartbeat grace period
    (a fake clock, `backdate_trial`): the resumed search fails and retries them at once,
    where it would wait the grace period out (12 s) first. Returns how many there were."""
    import optuna

    from hwnas.search.storage import GRACE_S, HEARTBEAT_S, backdate_trial, optuna_storage

    storage = optuna_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in running:
        backdate_trial(storage, t._trial_id, GRACE_S + HEARTBEAT_S + 1)
    return len(running)

"""Shared fixtures: a real SQLite file and, where a server is reachable, a real PostgreSQL."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the cores: one BLAS thread each (and in every subprocess a
    # test starts). OpenBLAS's threads spin while they wait for work; two workers of two
    # threads each on two cores took 4.3x the CPU time on the latency tests.
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import fcntl
import shutil
import uuid

import pytest
from cli_helpers import SHARED_CACHE, copy_db, prepare
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ENV = "HWNAS_TEST_PG"


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests but {PG_ENV} is not set")
        pytest.skip(f"no PostgreSQL server: set {PG_ENV} (e.g. from .ci/start-postgres)")
    return url


@pytest.fixture(scope="session", autouse=True)
def shared_compile_cache(tmp_path_factory):
    """One XLA compilation cache for every `hwnas` subprocess of the session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SHARED_CACHE, str(tmp_path_factory.mktemp("jaxcache")))
        yield


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin_url()
    name = f"hwnas_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # any failure to reach the server means skip
        engine.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {PG_ENV} is not reachable: {e}")
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    yield url
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'hwnas.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each database test runs on a real SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hwnas.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def ready(tmp_path_factory, worker_id):
    """A trained tiny run with a tflite predictor, shared by the search, export and dashboard
    tests (each uses its own search names). Prepared once for the whole session: the first
    xdist worker to need it prepares it under a lock, and each worker gets its own copy of the
    database in a folder of its own (the run's checkpoint stays where it was written)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by the workers
    shared = root / "ready-shared"
    with open(root / "ready.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "prepared").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            prepare(shared, f"sqlite:///{shared / 'hwnas.db'}")
            (shared / "prepared").touch()
    cwd = tmp_path_factory.mktemp("ready")
    return cwd, copy_db(f"sqlite:///{shared / 'hwnas.db'}", cwd / "hwnas.db")

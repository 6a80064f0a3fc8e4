from __future__ import annotations

import multiprocessing as mp

import optuna
import pytest
from sqlalchemy import select, text, update

from hwnas.db.models import SCHEMA_VERSION, Base, Meta, Run
from hwnas.db.queries import schema_version, status
from hwnas.db.session import DbError, open_db


def test_init_creates_prefixed_tables_and_records_the_version(db_url):
    with open_db(db_url) as db:
        st = status(db)
        assert st.schema_version == SCHEMA_VERSION == schema_version(db)
        assert set(st.tables) == {t.name for t in Base.metadata.sorted_tables}
        assert all(name.startswith("hwnas_") for name in st.tables)
        assert st.tables["hwnas_meta"] == 1


def test_optuna_tables_live_beside_ours(db_url):
    with open_db(db_url) as db:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(storage=db_url, study_name="s")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        st = status(db)
        assert st.other_tables["studies"] == 1 and st.other_tables["trials"] == 2
        assert not set(st.tables) & set(st.other_tables)


def test_writes_commit_and_reads_see_them(db_url):
    with open_db(db_url) as db:
        with db.write() as s:
            s.add(Run(name="r", dataset="digits", space={}, config={"epochs": 1}))
        with db.read() as s:
            run = s.scalars(select(Run).where(Run.name == "r")).one()
            assert run.config == {"epochs": 1} and run.status == "created"
        with pytest.raises(RuntimeError), db.write() as s:
            s.add(Run(name="r2", dataset="digits", space={}, config={}))
            raise RuntimeError("rolled back")
        with db.read() as s:
            assert s.scalar(select(Run).where(Run.name == "r2")) is None


def test_another_schema_version_is_refused(db_url):
    db = open_db(db_url)
    with db.write() as s:
        s.execute(update(Meta).where(Meta.key == "schema_version").values(value="999"))
    db.dispose()
    for create in (True, False):
        with pytest.raises(
            DbError, match=f"schema version 999, this hwnas needs {SCHEMA_VERSION}"
        ):
            open_db(db_url, create=create)


def test_uninitialised_database_is_refused_without_create(db_url):
    with pytest.raises(DbError, match="hwnas db init"):
        open_db(db_url, create=False)


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "none.db"
    with pytest.raises(DbError, match="no database at"):
        open_db(f"sqlite:///{path}", create=False)
    assert not path.exists()
    with pytest.raises(DbError, match="does not exist"):
        open_db(f"sqlite:///{tmp_path / 'no' / 'dir.db'}")


@pytest.mark.parametrize(
    "url,message",
    [
        ("nonsense", "not a database URL"),
        ("nosuchdb://x/y", "no database driver"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", "cannot open database"),
    ],
)
def test_bad_urls_give_one_clear_error(url, message):
    with pytest.raises(DbError, match=message):
        open_db(url)


def test_sqlite_uses_wal_and_a_busy_timeout(sqlite_url):
    with open_db(sqlite_url) as db, db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def _writer(url: str, worker: int, n: int) -> None:
    db = open_db(url, create=False)
    for i in range(n):
        with db.write() as s:  # read then write in one transaction: the lock-upgrade case
            count = s.scalar(text("SELECT count(*) FROM hwnas_runs"))
            s.add(Run(name=f"w{worker}-{i}", dataset="digits", space={}, config={"n": count}))
    db.dispose()


def test_four_processes_write_one_sqlite_file_without_locking_errors(sqlite_url):
    open_db(sqlite_url).dispose()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(sqlite_url, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with open_db(sqlite_url, create=False) as db:
        assert status(db).tables["hwnas_runs"] == 100

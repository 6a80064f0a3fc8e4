"""Schema migrations by Alembic (db/migrate.py, db/migrations/): databases as older hwnas
versions left them, before Alembic came (only `hwnas_meta` says their version) and after, are
upgraded keeping their rows, to the schema a new database gets."""

from __future__ import annotations

import json

from sqlalchemy import select, text, update

from hwnas.db.models import SCHEMA_VERSION, Measurement, Meta, Predictor, Run, Space, Target
from hwnas.db.queries import schema_version
from hwnas.db.session import open_db
from hwnas.supernet.space import load_space


def _drop_v7(conn) -> None:
    """What schema version 7 added: a round's front re-scored with the supernet."""
    conn.execute(text("ALTER TABLE hwnas_search_rounds DROP COLUMN accuracy_front"))


def _drop_v6(conn) -> None:
    """What schema versions 6 and 7 added: accuracy samples and predictors, a candidate's
    supernet accuracy, a round's accuracy predictor and re-scored front."""
    _drop_v7(conn)
    for table in ("accuracy_samples", "accuracy_predictors"):
        conn.execute(text(f"DROP TABLE hwnas_{table}"))
    conn.execute(text("ALTER TABLE hwnas_candidates DROP COLUMN accuracy_supernet"))
    conn.execute(text("ALTER TABLE hwnas_search_rounds DROP COLUMN accuracy_predictor"))


def _drop_v5(conn) -> None:
    """What schema versions 5 and 6 added: a run's checkpoint and loader, a search's
    objectives and options."""
    _drop_v6(conn)
    for table, column in (("runs", "checkpoint"), ("runs", "loader"), ("searches", "objectives"),
                          ("searches", "options")):  # fmt: skip
        conn.execute(text(f"ALTER TABLE hwnas_{table} DROP COLUMN {column}"))


def _drop_v4(conn) -> None:
    """What schema versions 4 and 5 added: spaces, and the space of measurements and
    predictors."""
    _drop_v5(conn)
    conn.execute(text("DROP TABLE hwnas_spaces"))
    for name in ("measurements", "predictors"):
        conn.execute(text(f"DROP INDEX ix_hwnas_{name}_space_key"))
        conn.execute(text(f"ALTER TABLE hwnas_{name} DROP COLUMN space_key"))
    conn.execute(text("ALTER TABLE hwnas_measurements DROP COLUMN weights"))


def _as_version(db, drop, version: str, *, alembic: bool = False) -> None:
    """Undo what the newer schema versions added (`drop`), record `version`, close `db`: as
    hwnas left it before Alembic came (no revision recorded), or with `alembic` after."""
    with db.engine.begin() as conn:
        drop(conn)
        conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=version))
        if alembic:
            conn.execute(text(f"UPDATE hwnas_alembic_version SET version_num = 'v{version}'"))
        else:
            conn.execute(text("DROP TABLE hwnas_alembic_version"))
    db.dispose()


def _downgrade_to_v2(db_url: str) -> None:
    """A database as hwnas with schema version 2 left it: no rounds table, no round columns,
    one search with one candidate."""
    db = open_db(db_url)
    with db.write() as s:
        s.add(Run(name="r", dataset="digits", space={}, config={}))
    with db.engine.begin() as conn:
        _drop_v4(conn)
        conn.execute(text("DROP TABLE hwnas_search_rounds"))
        conn.execute(text("ALTER TABLE hwnas_predictors DROP COLUMN name"))
        for column in ("extrapolated", "round", "scored_round"):
            conn.execute(text(f"ALTER TABLE hwnas_candidates DROP COLUMN {column}"))
        conn.execute(text(
            "INSERT INTO hwnas_searches (name, run_id, study_name, targets, budgets, sampler, "
            "status, created_at) SELECT 's', id, 's', '[]', '{}', 'tpe', 'finished', created_at "
            "FROM hwnas_runs"
        ))  # fmt: skip
        conn.execute(text(
            "INSERT INTO hwnas_candidates (search_id, trial_number, subnet_key, subnet, accuracy, "
            "params, macs, predicted_ms, feasible, pareto, created_at) SELECT id, 0, 'k', '{}', "
            "0.5, 1, 2, '{\"cpu\": 1.0}', true, true, created_at FROM hwnas_searches"
        ))  # fmt: skip
        conn.execute(update(Meta).where(Meta.key == "schema_version").values(value="2"))
        conn.execute(text("DROP TABLE hwnas_alembic_version"))
    db.dispose()


def test_a_version_2_database_is_migrated_keeping_its_rows(db_url, capsys):
    from hwnas.db.models import Candidate, Search, SearchRound

    _downgrade_to_v2(db_url)
    with open_db(db_url, create=False) as db:
        assert schema_version(db) == SCHEMA_VERSION
        assert "migrated from schema version 2" in capsys.readouterr().err
        with db.read() as s:
            c = s.scalars(select(Candidate)).one()
            assert (c.predicted_ms, c.extrapolated, c.round, c.scored_round) == (
                {"cpu": 1.0}, [], 0, 0,
            )  # fmt: skip
            assert s.scalars(select(Search)).one().rounds == []
        with db.write() as s:
            s.add(SearchRound(search_id=c.search_id, round=0, study_name="s", predictors={},
                              trials=1))  # fmt: skip
    again = open_db(db_url, create=False)  # opened again: nothing left to migrate
    again.dispose()
    assert "migrated" not in capsys.readouterr().err


def _v3_with_measurements(db_url: str) -> str:
    """A schema-3 database with a digits run, one cpu measurement of it and a cpu predictor;
    returns the digits space's key."""
    space = load_space("digits")
    db = open_db(db_url)
    with db.write() as s:
        run = Run(name="r", dataset="digits", space=space.to_dict(), config={})
        target = Target(key="cpu", name="cpu", settings={}, fingerprint={})
        s.add_all([run, target])
        s.flush()
        s.add(Measurement(target_id=target.id, run_id=run.id, subnet_key="k", subnet={},
                          median_ms=1.0, cv=0.1, iqr_ms=0.1, n_reps=20, fingerprint={},
                          source="job:1"))  # fmt: skip
        s.add(Predictor(target_id=target.id, kind="main", n_train=20, metrics={}, model={}))
    _as_version(db, _drop_v4, "3")
    return space.key


def test_a_version_3_database_gets_each_measurement_and_predictor_its_space(db_url, capsys):
    key = _v3_with_measurements(db_url)
    with open_db(db_url, create=False) as db:
        assert "migrated from schema version 3" in capsys.readouterr().err
        with db.read() as s:
            m = s.scalars(select(Measurement)).one()
            assert (m.space_key, m.weights) == (key, "trained")
            assert s.scalars(select(Predictor)).one().space_key == key
            assert s.scalars(select(Space)).one().key == key


def test_a_version_4_database_gets_runs_checkpoints_and_searches_objectives(db_url, capsys):
    from hwnas.db.models import Search

    db = open_db(db_url)
    with db.write() as s:
        run = Run(
            name="r",
            dataset="digits",
            space={},
            status="finished",
            config={"epochs": 1, "checkpoint": "/runs/r/supernet.ckpt", "loader": "stream"},
        )
        s.add(run)
        s.flush()
        s.add(Search(name="s", run_id=run.id, study_name="s", targets=["cpu", "macs"],
                     budgets={"cpu": 3.0}, sampler="tpe"))  # fmt: skip
    _as_version(db, _drop_v5, "4")
    with open_db(db_url, create=False) as db:
        assert "migrated from schema version 4" in capsys.readouterr().err
        with db.read() as s:
            r = s.scalars(select(Run)).one()
            assert (r.config, r.checkpoint, r.loader) == (
                {"epochs": 1}, "/runs/r/supernet.ckpt", "stream",
            )  # fmt: skip
            x = s.scalars(select(Search)).one()
            assert (x.targets, x.objectives, x.budgets, x.options) == (
                ["cpu"], ["macs"], {"cpu": 3.0}, {},
            )  # fmt: skip


def _search(s):
    """A run and a search of it, added to session `s`."""
    from hwnas.db.models import Search

    run = Run(name="r", dataset="digits", space={}, config={})
    s.add(run)
    s.flush()
    search = Search(name="s", run_id=run.id, study_name="s", targets=["cpu"], budgets={},
                    sampler="tpe")  # fmt: skip
    s.add(search)
    s.flush()
    return search


def test_a_version_5_database_keeps_its_candidates_accuracy_as_the_supernets(db_url, capsys):
    from hwnas.db.models import AccuracyPredictor, Candidate, SearchRound

    db = open_db(db_url)
    with db.write() as s:
        search = _search(s)
        s.add(SearchRound(search_id=search.id, round=0, study_name="s", predictors={},
                          trials=1))  # fmt: skip
        s.add(Candidate(search_id=search.id, trial_number=0, subnet_key="k", subnet={},
                        accuracy=0.75, params=1, macs=2, predicted_ms={"cpu": 1.0},
                        measured_ms=None))  # fmt: skip
    _as_version(db, _drop_v6, "5")
    with open_db(db_url, create=False) as db:
        assert "migrated from schema version 5" in capsys.readouterr().err
        with db.read() as s:
            c = s.scalars(select(Candidate)).one()
            assert (c.accuracy, c.accuracy_supernet) == (0.75, 0.75)
            assert s.scalars(select(SearchRound)).one().accuracy_predictor is None
            assert s.scalars(select(AccuracyPredictor)).all() == []


def test_a_version_6_database_keeps_its_rounds_without_a_rescored_front(db_url, capsys):
    from hwnas.db.models import SearchRound

    db = open_db(db_url)
    with db.write() as s:
        search = _search(s)
        s.add(SearchRound(search_id=search.id, round=0, study_name="s", predictors={"cpu": 1},
                          trials=5, accuracy_predictor=3))  # fmt: skip
    _as_version(db, _drop_v7, "6", alembic=True)
    with open_db(db_url, create=False) as db:
        assert "migrated from schema version 6" in capsys.readouterr().err
        with db.read() as s:
            r = s.scalars(select(SearchRound)).one()
            assert (r.trials, r.accuracy_predictor, r.accuracy_front) == (5, 3, None)


def test_migration_space_key_is_the_space_key():
    """Revision v4 keeps a frozen copy of `SearchSpace.key` (a migration must not change)."""
    from hwnas.db.migrate import script_module
    from hwnas.supernet.space import SearchSpace, presets

    _space_key_v4 = script_module("v4").space_key
    for path in presets().values():
        space = SearchSpace.from_file(path)
        assert _space_key_v4(space.to_dict()) == space.key
        assert _space_key_v4(json.loads(json.dumps(space.to_dict()))) == space.key
    assert _space_key_v4({"stages": "x"}) is None


def _differences(url: str) -> list:
    """What Alembic finds between hwnas's tables in the database at `url` and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from hwnas.db.models import Base

    def ours(name, type_, *_):
        return type_ != "table" or (name.startswith("hwnas_") and name != "hwnas_alembic_version")

    with open_db(url, create=False) as db, db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": ours})
        return compare_metadata(context, Base.metadata)


def test_an_upgraded_database_has_the_schema_a_new_one_gets(db_url, tmp_path, capsys):
    _downgrade_to_v2(db_url)
    assert _differences(db_url) == []  # upgraded on opening
    assert "migrated from schema version 2" in capsys.readouterr().err
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    open_db(fresh).dispose()
    assert _differences(fresh) == []


def test_the_newest_revision_is_this_hwnas_schema_version():
    from alembic.script import ScriptDirectory

    from hwnas.db.migrate import MIGRATIONS, OLDEST, revision

    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_current_head() == revision(SCHEMA_VERSION)
    chain = [s.revision for s in scripts.walk_revisions()]
    assert chain == [revision(v) for v in range(SCHEMA_VERSION, OLDEST - 1, -1)]

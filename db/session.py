"""Engines and sessions: SQLite by default (WAL, busy timeout), any SQLAlchemy URL otherwise.

SQLite write transactions start with BEGIN IMMEDIATE: a deferred transaction that reads and
then writes cannot wait for a busy lock (SQLite answers "database is locked" at once), while an
immediate one queues behind the busy timeout. Reads stay deferred and, in WAL mode, never block
a writer, so a dashboard can browse while workers write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hwnas.db.migrate import can_migrate, migrate, stamp_new
from hwnas.db.models import SCHEMA_VERSION, Base, Meta
from hwnas.exceptions import HwnasError
from hwnas.extras import require

DEFAULT_URL = "sqlite:///hwnas.db"
BUSY_TIMEOUT_MS = 60_000


class DbError(HwnasError):
    """A database the user pointed at cannot be used; the message says what to do."""


def resolve_url(url: str | None) -> str:
    """`--db` if given, else the HWNAS_DB environment variable, else ./hwnas.db."""
    return url or os.environ.get("HWNAS_DB") or DEFAULT_URL


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database)


@dataclass(frozen=True)
class Database:
    """An open hwnas database: an engine plus read and write session factories."""

    url: str
    engine: Engine
    _reader: sessionmaker[Session]
    _writer: sessionmaker[Session]

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it never takes a write lock."""
        with self._reader() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on error."""
        with self._writer.begin() as s:
            yield s

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()


def make_engine(url: str) -> Engine:
    try:
        u = make_url(url)
    except ArgumentError:
        raise DbError(
            f"{url!r} is not a database URL; use e.g. sqlite:///hwnas.db or "
            "postgresql+psycopg://user:pass@host/dbname"
        ) from None
    if u.get_backend_name() == "postgresql" and u.get_driver_name() == "psycopg":
        require("postgres", "a PostgreSQL database")
    try:
        if u.get_backend_name() == "sqlite":
            return _sqlite_engine(u)
        return create_engine(u, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as e:
        raise DbError(
            f"no database driver for {u.drivername!r} ({e}); install it or "
            "use sqlite:// or postgresql+psycopg://"
        ) from None


def _sqlite_engine(url) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    configure_sqlite(engine, url.database)
    return engine


def configure_sqlite(engine: Engine, database: str | None, begin: str = "DEFERRED") -> None:
    """WAL, busy timeout and foreign keys on every new connection of a SQLite `engine`, and
    transactions begun by us: `begin` mode unless the `sqlite_begin` execution option says
    otherwise (see the module docstring). Also used on Optuna's own engine."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        if database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", begin)
        conn.exec_driver_sql(f"BEGIN {mode}")


def open_db(url: str | None = None, *, create: bool = True) -> Database:
    """Open (and with `create`, initialise) the hwnas database at `url`.

    Raises DbError for a bad URL, an unreachable server, a missing SQLite file when `create`
    is False, or a database written by another schema version.
    """
    url = resolve_url(url)
    path = sqlite_path(url) if _parses(url) else None
    if path is not None and not path.exists():
        if not create:
            raise DbError(f"no database at {path}; run `hwnas db init --db {url}` first")
        if not path.parent.is_dir():
            raise DbError(f"cannot create {path}: directory {path.parent} does not exist")
    engine = make_engine(url)
    writer_bind = engine.execution_options(sqlite_begin="IMMEDIATE")
    db = Database(url, engine, sessionmaker(engine), sessionmaker(writer_bind))
    try:
        _check_schema(db, create=create)
    except OperationalError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise DbError(f"cannot open database {_safe(url)}: {reason}") from None
    except DbError:
        engine.dispose()
        raise
    return db


def _check_schema(db: Database, *, create: bool) -> None:
    with db.engine.connect() as conn:
        has_meta = inspect(conn).has_table(Meta.__tablename__)
    if has_meta:
        with db.read() as s:
            found = s.scalar(select(Meta.value).where(Meta.key == "schema_version"))
        if found is not None and can_migrate(found):
            with db.write() as s:
                migrate(s.connection(), found)
        elif found != str(SCHEMA_VERSION):
            raise DbError(
                f"database {_safe(db.url)} has hwnas schema version {found}, this hwnas needs "
                f"{SCHEMA_VERSION}; point --db at a new database or recreate this one"
            )
        if create:
            Base.metadata.create_all(db.engine)
        return
    if not create:
        raise DbError(f"database {_safe(db.url)} has no hwnas tables; run `hwnas db init` first")
    with db.write() as s:
        Base.metadata.create_all(s.connection())
        stamp_new(s.connection())


def _parses(url: str) -> bool:
    try:
        make_url(url)
    except ArgumentError:
        return False
    return True


def _safe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url

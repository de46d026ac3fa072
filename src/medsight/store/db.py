"""One URL names the database: ``sqlite:///PATH`` or ``postgresql://user@host/name``.

:func:`open_database` connects, brings the schema up to date (Alembic ``upgrade head``, run
from the migration scripts shipped in ``store/migrations``) and returns a :class:`Database`.
Without a URL the default is a SQLite file in the user's data directory (:func:`default_url`).

SQLite: every transaction is ``BEGIN IMMEDIATE`` (it takes the write lock at once), so a claim
of a job or an append to the audit trail is never interleaved with another process's; other
writers wait up to ``SQLITE_BUSY_SECONDS``. PostgreSQL: row locks (``FOR UPDATE``) do that.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from medsight.errors import MedsightError, _one_printable_line
from medsight.utils.extras import require

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_SECONDS = 30
URL_HELP = "sqlite:///PATH or postgresql://USER@HOST[:PORT]/NAME"


class DatabaseError(MedsightError):
    """A database URL that is malformed, or a database that cannot be opened."""


def default_path() -> Path:
    """``medsight.db`` in the user's data directory (platformdirs' choice when it is installed)."""
    try:
        from platformdirs import user_data_dir
    except ImportError:
        return Path.home() / ".local" / "share" / "medsight" / "medsight.db"
    return Path(user_data_dir("medsight", appauthor=False)) / "medsight.db"


def default_url() -> str:
    return f"sqlite:///{default_path()}"


def shown(url: Any) -> str:
    """The URL as the user wrote it (without the driver medsight picks), never its password."""
    if not hasattr(url, "render_as_string"):
        return str(url)
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def parse_url(url: str | None):
    """The SQLAlchemy URL for ``url`` (None or ``default``: the default), with the driver medsight uses."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = default_url() if url is None or str(url).strip() == "default" else str(url).strip()
    try:
        parsed = make_url(text)
    except ArgumentError:
        raise DatabaseError(f"--db {_one_printable_line(text)!r}: not a database URL (give {URL_HELP})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseError(f"--db {shown(parsed)!r}: give a file, sqlite:///PATH (an in-memory database "
                                "keeps nothing)")
        return parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        require("psycopg", extra="postgres", feature="a PostgreSQL database")
        return parsed.set(drivername="postgresql+psycopg")
    raise DatabaseError(f"--db {shown(parsed)!r}: unsupported database {backend!r} (give {URL_HELP})")


@dataclass
class Database:
    """An open, migrated database. ``transaction()`` gives a connection inside one transaction."""

    url: Any  # sqlalchemy.engine.URL
    engine: Any  # sqlalchemy.engine.Engine

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()

    def __str__(self) -> str:
        return shown(self.url)


def _sqlite_engine(url):
    from sqlalchemy import create_engine, event

    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # medsight says when transactions begin
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")  # readers do not wait for a writer

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(engine) -> None:
    """Bring the schema to the newest migration (no-op when it is there)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_database(url: str | None = None) -> Database:
    """Connect to ``url`` (None: :func:`default_url`) and migrate it; one-line errors."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    parsed = parse_url(url)
    try:
        engine = (_sqlite_engine(parsed) if parsed.get_backend_name() == "sqlite"
                  else create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10}))
    except OSError as exc:
        raise DatabaseError(f"--db {shown(parsed)}: cannot create its folder: {exc.strerror or exc}") from None
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        problem = _one_printable_line(str(getattr(exc, "orig", None) or exc)).split(" [SQL:")[0]
        raise DatabaseError(f"--db {shown(parsed)}: cannot open the database: {problem}") from None
    log.info("database: %s", shown(parsed))
    return Database(parsed, engine)

"""Database fixtures: every test that takes ``db_url`` runs on SQLite and on a real PostgreSQL.

The PostgreSQL half is skipped (with the reason) where its binaries are not installed
(``make install`` adds the Debian package ``postgresql``).
"""

from __future__ import annotations

import itertools
import os
import pwd
from typing import Iterator

import pytest

from tests.store.postgres import PostgresServer, binaries

_names = itertools.count()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    found = binaries()
    if found is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl; make install adds the postgresql package)")
    if os.geteuid() == 0 and not _has_user("postgres"):
        pytest.skip("PostgreSQL refuses to run as root and there is no 'postgres' user to run it as")
    server = PostgresServer(*found)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'medsight.db'}"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"test_{next(_names)}")


@pytest.fixture()
def db(db_url):
    from medsight.store import open_database

    database = open_database(db_url)
    yield database
    database.close()

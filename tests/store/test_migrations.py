"""Opening a database creates the schema (Alembic upgrade head) once; bad URLs are one line."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text

from medsight.store import DatabaseError, default_url, open_database
from medsight.store.db import parse_url
from medsight.store.tables import GENESIS, audit_head, metadata


def test_open_creates_the_schema_of_the_newest_migration(db_url):
    db = open_database(db_url)
    try:
        found = inspect(db.engine)
        assert set(metadata.tables) <= set(found.get_table_names())
        for name, table in metadata.tables.items():  # the code's tables match the migrated ones
            assert {c["name"] for c in found.get_columns(name)} == set(table.columns.keys()), name
        with db.transaction() as c:
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
            head = c.execute(select(audit_head)).one()
        assert (head.count, head.last_id, head.last_hash) == (0, 0, GENESIS)
    finally:
        db.close()


def test_opening_again_keeps_the_data(db_url):
    from medsight.store.jobs import JobQueue

    first = open_database(db_url)
    job = JobQueue(first).add("1.2.3", "runs/a")
    first.close()
    again = open_database(db_url)
    try:
        assert JobQueue(again).get(job).study_uid == "1.2.3"
    finally:
        again.close()


def test_default_url_is_a_sqlite_file_in_the_user_data_folder():
    url = default_url()
    assert url.startswith("sqlite:///") and url.endswith("medsight.db")
    assert parse_url(None).get_backend_name() == "sqlite"


@pytest.mark.parametrize("url, needle", [
    ("not a url", "not a database URL"),
    ("mysql://u@h/db", "unsupported database 'mysql'"),
    ("sqlite://", "give a file"),
])
def test_malformed_urls_are_one_line_naming_them(url, needle):
    with pytest.raises(DatabaseError) as info:
        open_database(url)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_an_unreachable_server_is_one_line_without_the_password():
    from tests.service.servers import free_port

    url = f"postgresql://someone:secret-pw@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(DatabaseError) as info:
        open_database(url)
    message = str(info.value)
    assert "cannot open the database" in message and "127.0.0.1" in message
    assert "secret-pw" not in message and "\n" not in message


def test_a_sqlite_file_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatabaseError) as info:
        open_database(f"sqlite:///{blocker / 'sub' / 'medsight.db'}")
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)

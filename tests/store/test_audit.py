"""The audit trail: append-only, hash-chained; verify names the first edited or deleted row;
export prints one record per inference (csv or jsonl)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import delete, not_, update

from medsight.store.audit import AuditEntry, append, export_rows, iso_utc, parse_since, verify
from medsight.store.tables import audit, audit_head
from tests.cli.helpers import assert_user_error, invoke

N = 5


def entry(i: int, **changes) -> AuditEntry:
    values = dict(caller="key-1a2b3c4d", run="runs/nodules", input_sha256=f"{i:064x}", checkpoint_sha256="c" * 64,
                  calibration={"temperature": 1.25}, threshold=0.4, label="nodule" if i % 2 else "no nodule",
                  output={"probabilities": {"nodule": 0.1 * i}, "needs_review": False}, duration_ms=12.5 + i,
                  time=f"2025-01-0{i + 1}T09:00:00.000000Z")
    return AuditEntry(**{**values, **changes})


@pytest.fixture()
def trail(db):
    for i in range(N):
        append(db, entry(i))
    append(db, entry(N, refused=True, reason="unsupported content", label=None, output=None))
    return db


def test_an_untouched_trail_verifies(trail):
    verdict = verify(trail)
    assert verdict.intact and verdict.rows == N + 1


def test_an_empty_trail_verifies(db):
    assert verify(db).intact and verify(db).rows == 0


@pytest.mark.parametrize("row", range(1, N + 2))
@pytest.mark.parametrize("column, value", [("label", "tampered"), ("caller", "someone-else"),
                                           ("threshold", 0.01), ("refused", not_(audit.c.refused)),
                                           ("row_hash", "f" * 64)])
def test_verify_finds_every_single_row_edit(trail, row, column, value):
    with trail.transaction() as c:
        c.execute(update(audit).where(audit.c.id == row).values(**{column: value}))
    verdict = verify(trail)
    assert not verdict.intact
    assert verdict.problem.startswith(f"row {row}:"), verdict.problem


@pytest.mark.parametrize("row", range(1, N + 2))
def test_verify_finds_every_deletion(trail, row):
    with trail.transaction() as c:
        c.execute(delete(audit).where(audit.c.id == row))
    verdict = verify(trail)
    assert verdict.problem is not None and verdict.problem.startswith(f"row {row}: deleted"), verdict.problem


def test_verify_finds_an_edited_head(trail):
    with trail.transaction() as c:
        c.execute(update(audit_head).values(count=N))
    assert not verify(trail).intact


def test_rows_go_on_after_a_reopen_and_in_threads(db_url):
    import threading

    from medsight.store import open_database

    dbs = [open_database(db_url) for _ in range(3)]
    threads = [threading.Thread(target=lambda d=d: [append(d, entry(1)) for _ in range(10)]) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    verdict = verify(open_database(db_url))
    assert verdict.intact and verdict.rows == 30


def test_export_since_and_fields(trail):
    rows = list(export_rows(trail, parse_since("2025-01-04")))
    assert [r["id"] for r in rows] == [4, 5, 6]
    assert rows[0]["output"] == {"probabilities": {"nodule": pytest.approx(0.3)}, "needs_review": False}
    assert rows[-1]["refused"] is True and rows[-1]["reason"] == "unsupported content"


def test_iso_times_are_stored_in_one_form():
    assert parse_since("2025-01-31") == "2025-01-31T00:00:00.000000Z"
    assert parse_since("2025-01-31T10:00+01:00") == "2025-01-31T09:00:00.000000Z"
    assert iso_utc().endswith("Z")


# ---- the command line --------------------------------------------------------------

REQUIRED = ("time", "caller", "input_sha256", "run", "checkpoint_sha256", "label", "refused")


def test_cli_export_jsonl(trail):
    result = invoke("audit", "export", "--db", trail.url.render_as_string(hide_password=False))
    assert result.exit_code == 0, (result.output, result.exception)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == N + 1
    for i, record in enumerate(records):
        assert set(REQUIRED) <= set(record)
        assert record["input_sha256"] == f"{i:064x}" and record["caller"] == "key-1a2b3c4d"
    assert records[-1]["refused"] is True and records[0]["refused"] is False


def test_cli_export_csv_since(trail):
    result = invoke("audit", "export", "--db", trail.url.render_as_string(hide_password=False),
                    "--format", "csv", "--since", "2025-01-05T00:00Z")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == ["5", "6"]
    assert set(REQUIRED) <= set(rows[0])
    assert json.loads(rows[0]["output"])["needs_review"] is False
    assert rows[0]["label"] == "no nodule" and rows[1]["refused"] == "True"


def test_cli_verify_intact_then_broken(trail):
    url = trail.url.render_as_string(hide_password=False)
    result = invoke("audit", "verify", "--db", url)
    assert result.exit_code == 0 and f"{N + 1} row(s)" in result.stdout
    with trail.transaction() as c:
        c.execute(delete(audit).where(audit.c.id == N + 1))  # the newest row
    assert_user_error(invoke("audit", "verify", "--db", url), f"row {N + 1}: deleted")


@pytest.mark.parametrize("args, needle", [
    (["audit", "export", "--db", "nonsense"], "'nonsense': not a database URL"),
    (["audit", "verify", "--db", "postgresql://u@127.0.0.1:1/x"], "postgresql://u@127.0.0.1:1/x: cannot open"),
    (["audit", "export", "--format", "xml", "--db", "sqlite:///{tmp}/a.db"], "--format 'xml'"),
    (["audit", "export", "--since", "yesterday", "--db", "sqlite:///{tmp}/a.db"], "--since 'yesterday'"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    assert_user_error(invoke(*[a.format(tmp=tmp_path) for a in args]), needle)

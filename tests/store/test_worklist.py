"""The triage priority, the worklist query (on SQLite and PostgreSQL) and the 0002 -> 0003 upgrade."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import inspect, text, update

from medsight.store import open_database
from medsight.store.jobs import JobQueue, add_feedback
from medsight.store.tables import jobs
from medsight.store.worklist import (
    Filters,
    WorklistError,
    critical_probability,
    summary,
    triage_priority,
    worklist_page,
)


def test_priority_is_the_probability_raised_by_uncertainty_and_a_flagged_input():
    assert triage_priority(0.3) == 0.3 and triage_priority(0.3, 0.0, False) == 0.3  # certain: p itself
    assert triage_priority(None, 0.9, True) is None  # no result yet
    assert triage_priority(0.0, 1.0) == 0.5 and triage_priority(0.0, 0.0, True) == 0.5
    assert triage_priority(0.0, 1.0, True) == 0.75
    assert triage_priority(1.0, 1.0, True) == 1.0
    assert triage_priority(0.02, 0.05, True) > triage_priority(0.5)  # a flagged "normal" above an even call
    grid = [i / 10 for i in range(11)]
    for p in grid:
        for u in grid:
            value = triage_priority(p, u)
            assert p <= value <= 1.0  # never below p, never above 1
            assert triage_priority(p, u, True) >= value  # a flag only raises it
            if u < 1.0:
                assert triage_priority(p, u + 0.1) >= value  # more uncertainty, higher
            if p < 1.0:
                assert triage_priority(p + 0.1, u) >= value  # more likely critical, higher
    assert triage_priority(1.7, -3) == 1.0 and triage_priority(-0.5) == 0.0  # clipped to [0, 1]


def test_the_critical_probability_is_one_minus_the_first_class():
    assert critical_probability({"normal": 0.8, "nodule": 0.2}, ["normal", "nodule"]) == 0.2
    assert critical_probability({"a": 0.5, "b": 0.3, "c": 0.2}, ["a", "b", "c"]) == 0.5
    record = {"label": "nodule", "probabilities": {"normal": 0.1, "nodule": 0.9}, "uncertainty": 0.4,
              "needs_review": False, "out_of_distribution": True, "modality": "CT"}
    brief = summary(record, ["normal", "nodule"], n_images=3)
    assert (brief["probability"], brief["out_of_distribution"], brief["n_images"]) == (0.9, True, 3)


def _seed(db, n: int, start: datetime) -> list[int]:
    """``n`` finished jobs, several with equal priorities and equal arrival times (ties for the cursor)."""
    queue, ids = JobQueue(db, lease_seconds=10 ** 6), []
    for i in range(n):
        job_id = queue.add(f"1.3.{i}", "runs/chest", modality="CT" if i % 3 else "MR")
        with db.transaction() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id).values(received_at=start + timedelta(minutes=i // 4)))
        job = queue.claim("w", now=start)
        queue.finish(job, now=start + timedelta(hours=1), result={
            "label": "x", "probability": [0.9, 0.5, 0.1][i % 3], "uncertainty": 0.0, "out_of_distribution": False})
        ids.append(job_id)
    return ids


def test_pages_follow_priority_then_arrival_and_every_row_comes_once(db):
    start = datetime(2025, 5, 1, 8, 0)
    _seed(db, 17, start)
    JobQueue(db).add("1.4.0", "runs/chest", modality="CT")  # pending: after every scored row
    whole, _ = worklist_page(db, limit=100)
    keys = [(-(r["priority"] if r["priority"] is not None else -1), r["received_at"], r["job_id"]) for r in whole]
    assert keys == sorted(keys) and whole[-1]["study_uid"] == "1.4.0" and len(whole) == 18
    seen, cursor = [], None
    while True:
        page, cursor = worklist_page(db, limit=4, cursor=cursor)
        seen += [r["job_id"] for r in page]
        if cursor is None:
            break
    assert seen == [r["job_id"] for r in whole]
    mr, _ = worklist_page(db, Filters(modality="mr", statuses=("done",)), limit=100)
    assert len(mr) == 6 and {r["modality"] for r in mr} == {"MR"}
    late, _ = worklist_page(db, Filters(since=start + timedelta(minutes=3)), limit=100)
    assert len(late) == 6  # 5 of the seeded (minutes 3 and 4) and the pending one


def test_verdicts_on_a_job_or_on_its_study_show_on_its_rows(db):
    queue = JobQueue(db)
    a, b = queue.add("1.5", "runs/chest", series_uid="1.5.1"), queue.add("1.5", "runs/chest", series_uid="1.5.2")
    add_feedback(db, "key-1", True, study_uid="1.5")  # the study as a whole
    add_feedback(db, "key-2", False, job_id=b, study_uid="1.5", comment="no")
    rows = {r["job_id"]: r["feedback"] for r in worklist_page(db)[0]}
    assert rows[a]["accepted"] is True and rows[a]["reader"] == "key-1"
    assert rows[b]["accepted"] is False and rows[b]["comment"] == "no"


def test_bad_filters_and_cursors_are_worklist_errors(db):
    with pytest.raises(WorklistError, match="status 'finished'"):
        Filters(statuses=("finished",))
    with pytest.raises(WorklistError, match="cursor"):
        worklist_page(db, cursor="eyJ4Ijox")
    with pytest.raises(WorklistError, match="limit"):
        worklist_page(db, limit=0)


def test_upgrading_a_0002_database_keeps_its_jobs_and_adds_the_result_columns(db_url):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from medsight.store.db import MIGRATIONS, parse_url

    url = parse_url(db_url)
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:  # a database as the node left it before this change
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    with engine.begin() as connection:
        assert "urgency" not in {c["name"] for c in inspect(connection).get_columns("jobs")}
        connection.execute(text(
            "INSERT INTO jobs (study_uid, series_uid, caller, run, priority, status, attempts, max_attempts, "
            "received_at, finished_at) VALUES ('1.6', '1.6.1', 'SCANNER', 'runs/chest', 0, 'done', 1, 3, "
            "'2025-01-02 03:04:05', '2025-01-02 03:05:05')"))
        connection.execute(text("INSERT INTO feedback (job_id, study_uid, reader, accepted, time) "
                                "VALUES (1, '1.6', 'key-x', true, '2025-01-02 04:00:00')"))
    engine.dispose()

    db = open_database(db_url)  # upgrades to the newest
    try:
        with db.transaction() as c:
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
        [row], following = worklist_page(db)
        assert following is None
        assert (row["study_uid"], row["status"], row["priority"], row["label"]) == ("1.6", "done", None, None)
        assert row["minutes_to_result"] == 1.0 and row["feedback"]["accepted"] is True
        queue = JobQueue(db)  # the new columns work on the upgraded table
        queue.add("1.7", "runs/chest", modality="CT", patient_id="P1")
        job = queue.claim("w")
        queue.finish(job, result={"label": "nodule", "probability": 0.8, "uncertainty": 0.1,
                                  "out_of_distribution": True, "modality": "CT"})
        top = worklist_page(db)[0][0]
        assert (top["study_uid"], top["label"], top["out_of_distribution"]) == ("1.7", "nodule", True)
        assert top["priority"] == triage_priority(0.8, 0.1, True) and top["modality"] == "CT"
    finally:
        db.close()

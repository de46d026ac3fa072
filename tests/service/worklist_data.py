"""A worklist database as the node leaves it: finished, failed and pending jobs of several modalities."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from medsight.store import open_database
from medsight.store.jobs import JobQueue
from medsight.store.tables import jobs

NAME, PATIENT_ID = "Doe^Jane", "PAT-SECRET-77"
# (study, modality, received, outcome): outcome None = still queued, a str = failed with that error,
# else (label, P(critical), uncertainty, out_of_distribution)
SEED = [
    ("1.2.1", "CT", "2025-03-01T08:00:00", ("nodule", 0.91, 0.2, False)),
    ("1.2.2", "CT", "2025-03-01T09:00:00", ("no nodule", 0.05, 0.1, False)),
    ("1.2.3", "CT", "2025-03-02T10:00:00", ("no nodule", 0.10, 0.9, False)),  # uncertain: raised
    ("1.2.4", "MR", "2025-03-02T11:00:00", ("no nodule", 0.02, 0.05, True)),  # flagged input: raised
    ("1.2.5", "CT", "2025-03-03T12:00:00", None),
    ("1.2.6", "CR", "2025-03-03T13:00:00", "the input guard refused it: wrong modality"),
    ("1.2.7", "CT", "2025-03-04T07:30:00", ("nodule", 0.62, 0.6, False)),
]


def seed_worklist(url: str, run: str = "/srv/runs/chest", seed=SEED) -> str:
    """Jobs on ``run`` as ``seed`` says, each finished 7 minutes after it arrived; the URL."""
    db = open_database(url)
    queue, pending = JobQueue(db, lease_seconds=3600), []
    for study, modality, received, outcome in seed:
        job_id = queue.add(study, run, series_uid=study + ".1", caller="SCANNER", modality=modality,
                           patient_name=NAME, patient_id=PATIENT_ID, queued=False)
        arrived = datetime.fromisoformat(received)
        with db.transaction() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id).values(received_at=arrived))
        if outcome is None:
            pending.append(job_id)
            continue
        queue.release(job_id)
        job = queue.claim("w", now=arrived)
        assert job.id == job_id
        finished = arrived + timedelta(minutes=7)
        if isinstance(outcome, str):
            queue.finish(job, outcome, now=finished)
            continue
        label, p, u, ood = outcome
        queue.finish(job, now=finished, result={
            "label": label, "probability": p, "uncertainty": u, "out_of_distribution": ood,
            "probabilities": {"no nodule": 1 - p, "nodule": p}, "needs_review": u > 0.5 or ood,
            "referenced_sop_instance_uid": study + ".1.1"})
    for job_id in pending:
        queue.release(job_id)
    db.close()
    return url

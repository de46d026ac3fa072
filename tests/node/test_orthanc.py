"""A real PACS as the destination: Orthanc's C-STORE SCP receives the results, and a job redone
after its worker was killed leaves it holding each result once."""

from __future__ import annotations

import pydicom
import pytest
import requests

from medsight.node import load_node_config
from medsight.node.serve import Node
from medsight.node.worker import Worker
from medsight.store.jobs import JobQueue
from tests.pacs.conftest import orthanc_server

from .conftest import send_files, wait_for, write_node_config, write_series


def _instances(pacs, study_uid: str) -> list[dict]:
    found = requests.post(f"{pacs.http}/tools/find", auth=(pacs.user, pacs.password), timeout=30,
                          json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
    found.raise_for_status()
    return found.json()


def _send_and_redo(node, ct) -> tuple[JobQueue, list]:
    """Send ``ct`` to the node; a worker sends the results and dies before marking the job done,
    and a second worker redoes it once the lease expires. The queue and the first results sent."""
    assert send_files(node.port, ct) == [0, 0]
    queue = JobQueue(node.db)
    wait_for(lambda: queue.with_status("queued"), 30, "the job to be queued")
    doomed = Worker(node.cfg.model_copy(update={"lease_seconds": 0.5}), node.db, name="doomed")
    first = doomed.process(doomed.queue.claim(doomed.name))  # sent, then killed before done
    survivor = Worker(node.cfg, node.db, doomed.models, name="survivor")
    job = wait_for(lambda: survivor.run_one(), 10, "the expired job to be claimed again")
    assert queue.get(job.id).status == "done"
    return queue, first


def _started_node(tmp_path, node_run, destination) -> tuple[Node, list, str]:
    """A node sending to ``destination``, and a two-slice CT series (its files and study UID)."""
    path = write_node_config(tmp_path, node_run, destination, quiet_seconds=1)
    ct = write_series(tmp_path / "ct", n=2)
    return Node(load_node_config(path)).start(), ct, pydicom.dcmread(ct[0]).StudyInstanceUID


def test_results_reach_orthanc_once_after_a_redone_job(tmp_path, node_run):
    with orthanc_server(tmp_path / "orthanc", dicom=True) as pacs:
        destination = {"ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
        node, ct, study = _started_node(tmp_path, node_run, destination)
        try:
            _, first = _send_and_redo(node, ct)
        finally:
            node.stop()
        stored = _instances(pacs, study)
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in stored) == sorted(str(ds.SOPInstanceUID)
                                                                                  for ds in first)


def test_results_reach_orthanc_by_stow_rs_and_the_worklist_shows_the_finding(tmp_path, node_run):
    from medsight.errors import MedsightError
    from medsight.store.worklist import triage_priority, worklist_page

    with orthanc_server(tmp_path / "orthanc") as pacs:
        (tmp_path / "wrong.pw").write_text("not-the-password\n")
        wrong = {"stow_url": pacs.url, "user": pacs.user, "password_file": "wrong.pw"}
        with pytest.raises(MedsightError, match="refused the credentials"):  # checked at start-up, one line
            Node(load_node_config(write_node_config(tmp_path, node_run, wrong))).start()
        (tmp_path / "pacs.pw").write_text(pacs.password + "\n")
        destination = {"stow_url": pacs.url, "user": pacs.user, "password_file": "pacs.pw"}
        node, ct, study = _started_node(tmp_path, node_run, destination)
        try:
            _, sent = _send_and_redo(node, ct)
            [row], _ = worklist_page(node.db)
        finally:
            node.stop()
        stored = _instances(pacs, study)
    assert len(stored) == 2  # SR + SC, once, though sent twice
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in stored) == sorted(str(ds.SOPInstanceUID)
                                                                                  for ds in sent)
    assert (row["study_uid"], row["status"], row["modality"]) == (study, "done", "CT")
    assert row["label"] in ("nodule", "no nodule") and 0.0 <= row["probability"] <= 1.0
    assert row["priority"] == triage_priority(row["probability"], row["uncertainty"], row["out_of_distribution"])
    assert row["referenced_sop_instance_uid"] in {str(pydicom.dcmread(p).SOPInstanceUID) for p in ct}
    assert row["minutes_to_result"] is not None and "patient_name" not in row

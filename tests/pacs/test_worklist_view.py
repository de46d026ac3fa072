"""A worklist row opens in the viewer: the service fetches the image its finding refers to from
the operator's PACS (a real Orthanc) and answers as for an upload (label, heatmap, pixels)."""

from __future__ import annotations

import base64

from medsight.service.settings import PacsSettings
from medsight.store import open_database
from medsight.store.jobs import JobQueue
from tests.service.conftest import AUTH, client_for


def _worklist_db(tmp_path, ct, run) -> str:
    """A node's database holding one finished job on pydicom's CT_small (on the PACS)."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    db = open_database(url)
    queue = JobQueue(db)
    queue.add(str(ct.StudyInstanceUID), str(run), series_uid=str(ct.SeriesInstanceUID), modality="CT")
    queue.finish(queue.claim("w"), result={
        "label": "nodule", "probability": 0.8, "uncertainty": 0.3, "out_of_distribution": False,
        "referenced_sop_instance_uid": str(ct.SOPInstanceUID)})
    db.close()
    return url


def test_a_worklist_row_opens_its_image_from_the_pacs(served, orthanc, uploaded, trained_run, tmp_path):
    ct = uploaded["CT"]
    study = str(ct.StudyInstanceUID)
    url = _worklist_db(tmp_path, ct, trained_run)
    pacs = PacsSettings(orthanc.url, orthanc.user, orthanc.password)
    with client_for(served, audit_db=url, pacs=pacs) as api:
        [row] = api.get("/v1/worklist", headers=AUTH).json()["items"]
        assert row["viewable"] is True and row["study_uid"] == study
        answer = api.get(f"/v1/worklist/{study}/view", headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == "nodules" and body["label"] in ("nodule", "no nodule")
        assert body["job_id"] == row["job_id"] and body["input"]["source"] == "pacs"
        assert body["heatmap"]["png"] and base64.b64decode(body["image"]["data"])
        assert (body["image"]["width"], body["image"]["height"]) == (ct.Columns, ct.Rows)
        assert api.get("/v1/worklist/1.2.3/view", headers=AUTH).status_code == 404
        assert api.get(f"/v1/worklist/{study}/view").status_code == 401
    with client_for(served, audit_db=url) as no_pacs:
        [row] = no_pacs.get("/v1/worklist", headers=AUTH).json()["items"]
        assert row["viewable"] is False
        refused = no_pacs.get(f"/v1/worklist/{study}/view", headers=AUTH)
        assert refused.status_code == 409 and "--pacs-url" in refused.json()["detail"]

"""Round trips with a real Orthanc: query, pull, diagnose, store SR + SC (and a SEG) under the study."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from medsight.cli import app
from medsight.pacs import PacsError, connect, find_series, find_studies, pull_study
from medsight.pacs.run import run_study, store_segmentation

pytestmark = pytest.mark.slow
SR_CLASS, SC_CLASS, SEG_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def client(orthanc):
    return connect(orthanc.url, orthanc.user, orthanc.password)


def instances_of(client, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
    return client.retrieve_series(study_uid, series_uid)


def _content_values(sr: pydicom.Dataset) -> dict:
    """Concept name -> value (code meaning or number) over the whole SR content tree."""
    values = {}

    def walk(items):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning
            if item.ValueType == "CODE":
                values[name] = item.ConceptCodeSequence[0].CodeMeaning
            elif item.ValueType == "NUM":
                values[name] = float(item.MeasuredValueSequence[0].NumericValue)
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return values


def test_query_and_pull(client, uploaded, tmp_path):
    ct = uploaded["CT"]
    studies = {s["StudyInstanceUID"]: s for s in find_studies(client)}
    assert {ds.StudyInstanceUID for ds in uploaded.values()} <= set(studies)
    assert studies[ct.StudyInstanceUID]["ModalitiesInStudy"] == "CT"
    assert [s["StudyInstanceUID"] for s in find_studies(client, modality="MR")] == [uploaded["MR"].StudyInstanceUID]
    assert all("PatientName" not in s and "PatientID" not in s for s in studies.values())
    pulled = pull_study(client, ct.StudyInstanceUID, tmp_path)
    [(series_uid, [path])] = pulled.items()
    assert series_uid == ct.SeriesInstanceUID and path.parent == tmp_path / series_uid
    assert np.array_equal(pydicom.dcmread(path).pixel_array, ct.pixel_array)


def test_run_stores_sr_and_heatmap_under_the_study(client, uploaded, served):
    ct = uploaded["CT"]
    [summary] = run_study(client, served.get("nodules").run, ct.StudyInstanceUID, model_name="nodules")
    assert summary["series_uid"] == ct.SeriesInstanceUID and summary["n_images"] == 1
    assert summary["referenced_sop_instance_uid"] == ct.SOPInstanceUID
    assert summary["label"] in ("nodule", "no nodule")
    stored = {s["sop_class_uid"]: s for s in summary["stored"]}
    assert set(stored) == {SR_CLASS, SC_CLASS}

    series = {s["SeriesInstanceUID"]: s for s in find_series(client, ct.StudyInstanceUID)}
    assert {stored[SR_CLASS]["series_uid"], stored[SC_CLASS]["series_uid"]} <= set(series)
    assert series[stored[SR_CLASS]["series_uid"]]["Modality"] == "SR"

    [sr] = instances_of(client, ct.StudyInstanceUID, stored[SR_CLASS]["series_uid"])
    assert sr.SOPInstanceUID == stored[SR_CLASS]["sop_instance_uid"] != ct.SOPInstanceUID
    assert (sr.PatientID, sr.StudyInstanceUID) == (ct.PatientID, ct.StudyInstanceUID)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    finding = _content_values(sr)
    assert finding["Finding"] == summary["label"]
    for name, p in summary["probabilities"].items():
        assert finding[f"Probability of {name}"] == pytest.approx(p, abs=1e-6)
    [sc] = instances_of(client, ct.StudyInstanceUID, stored[SC_CLASS]["series_uid"])
    assert (sc.PatientID, sc.StudyInstanceUID) == (ct.PatientID, ct.StudyInstanceUID)
    assert sc.pixel_array.shape == (128, 128, 3) and sc.SamplesPerPixel == 3

    # Our own results are not diagnosed again: a second run still sees one image series.
    [again] = run_study(client, served.get("nodules").run, ct.StudyInstanceUID, model_name="nodules",
                        store_results=False)
    assert again["series_uid"] == ct.SeriesInstanceUID and again["stored"] == []


def test_store_segmentation_over_ct_small(client, uploaded):
    ct = uploaded["CT"]
    mask = np.zeros((128, 128), np.uint8)
    mask[40:60, 50:75] = 1
    stored = store_segmentation(client, [ct], mask, "lesion-test")
    [seg] = instances_of(client, ct.StudyInstanceUID, stored["series_uid"])
    assert seg.SOPClassUID == SEG_CLASS and seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    import highdicom as hd

    pixels = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance([ct.SOPInstanceUID],
                                                                                 segment_numbers=[1])
    assert np.array_equal(pixels[0, ..., 0], mask)


def test_service_endpoint_runs_on_the_pacs(uploaded, served, orthanc):
    from medsight.service.settings import PacsSettings
    from tests.service.conftest import AUTH, client_for

    mr = uploaded["MR"]
    pacs = PacsSettings(orthanc.url, orthanc.user, orthanc.password)
    with client_for(served, pacs=pacs) as api:
        response = api.post("/v1/pacs/run", json={"study_uid": mr.StudyInstanceUID}, headers=AUTH)
        assert response.status_code == 200, response.text
        [series] = response.json()["series"]
        assert series["series_uid"] == mr.SeriesInstanceUID and len(series["stored"]) == 2
        missing = api.post("/v1/pacs/run", json={"study_uid": "1.2.3.4.5"}, headers=AUTH)
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
        assert api.post("/v1/pacs/run", json={"study_uid": "1.2; DROP"}, headers=AUTH).status_code == 422
        assert api.post("/v1/pacs/run", json={"study_uid": mr.StudyInstanceUID, "url": "http://evil"},
                        headers=AUTH).status_code == 422  # the PACS address is the operator's, never the client's
        assert api.post("/v1/pacs/run", json={"study_uid": mr.StudyInstanceUID}).status_code == 401
    with client_for(served) as no_pacs:
        assert no_pacs.post("/v1/pacs/run", json={"study_uid": mr.StudyInstanceUID}, headers=AUTH).status_code == 404
    client = connect(orthanc.url, orthanc.user, orthanc.password)
    modalities = {s["Modality"] for s in find_series(client, mr.StudyInstanceUID)}
    assert modalities >= {"MR", "SR"}


def test_wrong_password_is_one_clear_error(orthanc, uploaded):
    with pytest.raises(PacsError, match="refused the credentials"):
        find_studies(connect(orthanc.url, orthanc.user, "wrong"))


def test_cli_query_pull_run(orthanc, uploaded, trained_run, tmp_path):
    runner = CliRunner()
    (tmp_path / "pw").write_text(orthanc.password + "\n")
    auth = ["--url", orthanc.url, "--user", orthanc.user, "--password-file", str(tmp_path / "pw")]
    ct = uploaded["CT"]
    result = runner.invoke(app, ["pacs", "query", *auth, "--modality", "CT"])
    assert result.exit_code == 0, result.output
    assert ct.StudyInstanceUID in result.stdout and str(ct.PatientName) not in result.stdout
    result = runner.invoke(app, ["pacs", "pull", ct.StudyInstanceUID, "--out", str(tmp_path / "pulled"), *auth])
    assert result.exit_code == 0 and (tmp_path / "pulled" / ct.SeriesInstanceUID / f"{ct.SOPInstanceUID}.dcm").is_file()
    result = runner.invoke(app, ["pacs", "run", str(trained_run), ct.StudyInstanceUID, "--no-store", *auth])
    assert result.exit_code == 0, result.output
    assert f"series {ct.SeriesInstanceUID}:" in result.stdout and "nothing stored" in result.stdout
    bad = runner.invoke(app, ["pacs", "query", "--url", orthanc.url, "--user", orthanc.user, "--password", "nope"])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("medsight: error:") and "credentials" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

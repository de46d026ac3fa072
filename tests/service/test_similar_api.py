"""``POST /v1/predict?similar=K``: the K indexed cases nearest to the upload, from the index given
with ``--index NAME=FOLDER`` or built into ``RUN/index``; bad K and a model without an index are one
clear 422 each, and nothing from the index reaches the log."""

from __future__ import annotations

import logging
import shutil

import pytest

from medsight.errors import ConfigError
from medsight.service.models import load_registry
from tests.cli.helpers import invoke

from .conftest import AUTH, client_for
from .conftest import INDEXED_CASES as CASES


@pytest.fixture(scope="module")
def index(similar_index):
    return similar_index


@pytest.fixture(scope="module")
def indexed(trained_run, index):
    return load_registry([f"nodules={trained_run}"], [f"nodules={index[0]}"])


def upload(client, path, query: str):
    with open(path, "rb") as fh:
        return client.post(f"/v1/predict?{query}", headers=AUTH, files={"file": ("x.nii.gz", fh)})


def test_similar_k_lists_the_k_nearest_cases_the_upload_itself_first(indexed, index, slice_files, caplog):
    _, itself = index
    with client_for(indexed) as client:
        assert client.get("/v1/models", headers=AUTH).json()[0]["similar_cases"] == CASES
        with caplog.at_level(logging.DEBUG):
            response = upload(client, slice_files["nifti"], "similar=3")
        assert response.status_code == 200, response.text
        similar = response.json()["similar"]
        assert len(similar) == 3 and all(set(s) == {"case", "label", "distance"} for s in similar)
        assert similar[0]["case"] == itself and similar[0]["label"] == "nodule" and similar[0]["distance"] < 1e-3
        assert [s["distance"] for s in similar] == sorted(s["distance"] for s in similar)
        assert "case-" not in caplog.text  # no case key of the index in the log
        # more than the index holds: all of it; none asked: no list
        assert len(upload(client, slice_files["nifti"], "similar=50").json()["similar"]) == CASES
        assert "similar" not in upload(client, slice_files["nifti"], "heatmap=false").json()


@pytest.mark.parametrize("k", ["51", "-1", "five"])
def test_a_bad_k_is_one_422_line(indexed, slice_files, k):
    with client_for(indexed) as client:
        response = upload(client, slice_files["nifti"], f"similar={k}")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("query similar:") and "\n" not in detail


def test_similar_from_a_model_without_an_index_names_the_model(client, slice_files):
    response = upload(client, slice_files["nifti"], "similar=5")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'nodules' has no similar-case index" in detail and "medsight index" in detail
    assert client.get("/v1/models", headers=AUTH).json()[0]["similar_cases"] == 0


def test_an_index_in_run_index_is_found_without_the_option(trained_run, index, tmp_path, slice_files):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.copytree(index[0], run / "index")
    with client_for(load_registry([run])) as client:
        similar = upload(client, slice_files["nifti"], "similar=2").json()["similar"]
    assert [s["case"] for s in similar][:1] == [index[1]]


def test_index_options_must_name_a_served_model(trained_run, index):
    with pytest.raises(ConfigError, match="no model named 'other'"):
        load_registry([f"nodules={trained_run}"], [f"other={index[0]}"])
    with pytest.raises(ConfigError, match="name the model it is for"):
        load_registry([f"a={trained_run}", f"b={trained_run}"], [str(index[0])])


def test_serve_with_an_index_for_no_served_model_is_one_line(trained_run, tmp_path):
    result = invoke("serve", f"nodules={trained_run}", "--open", "--port", "1", "--index", f"other={tmp_path}")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--index other=" in result.stderr and "no model named 'other'" in result.stderr

"""``GET /v1/worklist`` and ``POST /v1/worklist/{study_uid}/feedback`` on a SQLite database seeded
with jobs as the node leaves them: filters, paging, priority order, the key, feedback, and no
patient name or ID in the answers or the log unless the operator asks for them."""

from __future__ import annotations

import logging

import pytest

from medsight.service.models import ModelRegistry
from medsight.store import open_database
from medsight.store.jobs import feedback_rows
from medsight.store.worklist import triage_priority

from .conftest import AUTH, KEY, client_for
from .worklist_data import NAME, PATIENT_ID, SEED, seed_worklist


@pytest.fixture()
def db_url(tmp_path) -> str:
    return seed_worklist(f"sqlite:///{tmp_path / 'node.db'}")


@pytest.fixture()
def client(db_url):
    with client_for(ModelRegistry(), audit_db=db_url) as c:
        yield c


def get(client, **params):
    response = client.get("/v1/worklist", headers=AUTH, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_rows_have_the_contract_fields_and_are_sorted_by_priority(client):
    body = get(client)
    assert set(body) == {"items", "next"} and body["next"] is None
    items = body["items"]
    assert len(items) == len(SEED)
    for item in items:
        assert {"study_uid", "status", "label", "probability", "priority", "received_at", "finished_at"} <= set(item)
    priorities = [i["priority"] for i in items if i["priority"] is not None]
    assert priorities == sorted(priorities, reverse=True) and len(priorities) == 5
    assert [i["study_uid"] for i in items] == ["1.2.1", "1.2.7", "1.2.4", "1.2.3", "1.2.2", "1.2.5", "1.2.6"]
    top = items[0]
    assert top["priority"] == triage_priority(0.91, 0.2, False)
    assert (top["status"], top["label"], top["finding"], top["modality"]) == ("done", "nodule", "nodule", "CT")
    assert top["probability"] == 0.91 and top["uncertainty"] == 0.2 and top["out_of_distribution"] is False
    assert top["received_at"] == "2025-03-01T08:00:00.000000Z" and top["finished_at"] == "2025-03-01T08:07:00.000000Z"
    assert top["minutes_to_result"] == 7.0 and top["model"] == "chest" and top["feedback"] is None
    flagged = next(i for i in items if i["study_uid"] == "1.2.4")
    assert flagged["out_of_distribution"] is True and flagged["priority"] > 0.5 > flagged["probability"]
    pending, failed = items[-2:]
    assert (pending["status"], pending["priority"], pending["finished_at"]) == ("queued", None, None)
    assert (failed["status"], failed["finding"]) == ("failed", "the input guard refused it: wrong modality")
    assert failed["minutes_to_result"] is None


def test_status_modality_and_date_filters(client):
    assert [i["study_uid"] for i in get(client, status="failed")["items"]] == ["1.2.6"]
    both = get(client, status=["queued", "failed"])["items"]
    assert {i["status"] for i in both} == {"queued", "failed"} and len(both) == 2
    assert len(get(client, status="done,queued")["items"]) == 6
    assert [i["study_uid"] for i in get(client, modality="mr")["items"]] == ["1.2.4"]  # any case
    assert {i["modality"] for i in get(client, modality="CT")["items"]} == {"CT"}
    day = get(client, since="2025-03-02", until="2025-03-02")["items"]  # a bare until: through its end
    assert sorted(i["study_uid"] for i in day) == ["1.2.3", "1.2.4"]
    later = get(client, since="2025-03-03T12:30:00Z")["items"]
    assert sorted(i["study_uid"] for i in later) == ["1.2.6", "1.2.7"]
    assert [i["study_uid"] for i in get(client, status="done", modality="CT", until="2025-03-01T08:30")["items"]] \
        == ["1.2.1"]


def test_paging_with_the_cursor_returns_every_row_once_in_order(client):
    everything = [i["job_id"] for i in get(client)["items"]]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = get(client, **params)
        assert len(body["items"]) <= 3
        seen += [i["job_id"] for i in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == everything and pages == 3
    filtered = get(client, modality="CT", limit=2)
    rest = get(client, modality="CT", limit=10, cursor=filtered["next"])
    assert [i["study_uid"] for i in filtered["items"] + rest["items"]] == ["1.2.1", "1.2.7", "1.2.3", "1.2.2", "1.2.5"]


@pytest.mark.parametrize("params, needle", [
    ({"status": "finished"}, "status 'finished'"),
    ({"since": "yesterday"}, "since 'yesterday'"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"limit": 0}, "limit"),
])
def test_bad_requests_are_422_naming_the_parameter(client, params, needle):
    response = client.get("/v1/worklist", headers=AUTH, params=params)
    assert response.status_code == 422 and needle in response.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-123"}])
def test_the_worklist_and_feedback_need_the_key(client, headers):
    assert client.get("/v1/worklist", headers=headers).status_code == 401
    response = client.post("/v1/worklist/1.2.1/feedback", headers=headers, json={"accepted": True})
    assert response.status_code == 401


def test_feedback_is_stored_with_the_reader_and_shown_on_the_row(client, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.post("/v1/worklist/1.2.1/feedback", headers=AUTH,
                           json={"accepted": False, "comment": "calcified granuloma, not a nodule"})
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["accepted"] is False and answer["reader"].startswith("key-") and KEY not in response.text
    row = next(i for i in get(client)["items"] if i["study_uid"] == "1.2.1")
    assert row["feedback"]["accepted"] is False
    assert row["feedback"]["comment"] == "calcified granuloma, not a nodule"
    assert row["feedback"]["reader"] == answer["reader"]
    # a later verdict replaces it on the row; both are stored
    assert client.post("/v1/worklist/1.2.1/feedback", headers=AUTH, json={"accepted": True}).status_code == 201
    row = next(i for i in get(client)["items"] if i["study_uid"] == "1.2.1")
    assert row["feedback"]["accepted"] is True and row["feedback"]["comment"] is None
    stored = feedback_rows(open_database(db_url))
    assert [(f["study_uid"], f["accepted"], f["reader"]) for f in stored] == [
        ("1.2.1", False, answer["reader"]), ("1.2.1", True, answer["reader"])]
    assert stored[0]["job_id"] == row["job_id"]
    assert KEY not in str(stored) and "granuloma" not in caplog.text  # a comment may name a patient


def test_feedback_on_an_unknown_study_or_a_bad_body(client):
    assert client.post("/v1/worklist/9.9.9/feedback", headers=AUTH, json={"accepted": True}).status_code == 404
    assert client.post("/v1/worklist/1.2.1/feedback", headers=AUTH, json={"comment": "x"}).status_code == 422
    assert client.post("/v1/worklist/not-a-uid/feedback", headers=AUTH, json={"accepted": True}).status_code == 422
    other = client.post("/v1/worklist/1.2.1/feedback", headers=AUTH, json={"accepted": True, "job_id": 2})
    assert other.status_code == 404 and "not a row of study" in other.json()["detail"]


def test_no_patient_name_or_id_unless_the_operator_enables_it(db_url, caplog):
    caplog.set_level(logging.DEBUG)
    with client_for(ModelRegistry(), audit_db=db_url) as client:
        text = client.get("/v1/worklist", headers=AUTH).text
        client.post("/v1/worklist/1.2.1/feedback", headers=AUTH, json={"accepted": True})
    assert "Doe" not in text and PATIENT_ID not in text and "patient" not in text
    with client_for(ModelRegistry(), audit_db=db_url, show_patient=True) as client:
        items = client.get("/v1/worklist", headers=AUTH).json()["items"]
    assert {(i["patient_name"], i["patient_id"]) for i in items} == {(NAME, PATIENT_ID)}
    assert "Doe" not in caplog.text and PATIENT_ID not in caplog.text  # never logged, either way


def test_without_a_database_the_worklist_says_how_to_give_one():
    with client_for(ModelRegistry()) as client:
        response = client.get("/v1/worklist", headers=AUTH)
    assert response.status_code == 404 and "--db" in response.json()["detail"]

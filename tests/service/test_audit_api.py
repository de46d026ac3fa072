"""``POST /v1/predict`` with an audit database (``medsight serve --db``): a row per answer and
per refusal; the caller is the API key's id, never the key."""

from __future__ import annotations

import hashlib
import json

from medsight.store import open_database
from medsight.store.audit import export_rows, verify
from tests.service.conftest import AUTH, KEY, client_for


def post(client, path):
    with open(path, "rb") as fh:
        return client.post("/v1/predict", headers=AUTH, files={"file": ("Doe_Jane.png", fh, "image/png")})


def test_predict_writes_an_audit_row_and_keeps_its_answer(served, slice_files, trained_run, tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with client_for(served) as plain:
        expected = post(plain, slice_files["png"]).json()
    with client_for(served, audit_db=url) as client:
        answer = post(client, slice_files["png"])
        refused = client.post("/v1/predict", headers=AUTH, files={"file": ("notes.txt", b"not an image", "text/plain")})
    assert answer.status_code == 200 and refused.status_code == 415
    body = answer.json()
    assert set(body) == set(expected) and body["label"] == expected["label"]  # every field still there

    db = open_database(url)
    rows = list(export_rows(db))
    assert verify(db).intact and len(rows) == 2
    row, no = rows
    assert row["caller"] == "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert row["input_sha256"] == hashlib.sha256(slice_files["png"].read_bytes()).hexdigest()
    assert row["label"] == body["label"] and row["output"]["probabilities"] == body["probabilities"]
    assert row["run"] == str(trained_run.resolve()) and len(row["checkpoint_sha256"]) == 64
    assert not row["refused"] and row["threshold"] == body["threshold"]
    assert no["refused"] and no["reason"].startswith("415") and no["input_sha256"] == hashlib.sha256(
        b"not an image").hexdigest()
    stored = json.dumps(rows) + "".join(f.read_bytes().decode("latin-1") for f in tmp_path.glob("audit.db*"))
    assert KEY not in stored and "Doe_Jane" not in stored


def test_an_open_service_audits_as_open(served, slice_files, tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with client_for(served, audit_db=url, api_key=None, open_access=True) as client:
        assert post(client, slice_files["png"]).status_code == 200
    assert [r["caller"] for r in export_rows(open_database(url))] == ["open"]


def test_serve_with_a_bad_db_url_is_one_line_before_loading_models(tmp_path):
    from tests.cli.helpers import assert_user_error, invoke

    result = invoke("serve", tmp_path / "no-such-run", "--open", "--port", "1", "--db", "nonsense://x")
    assert_user_error(result, "--db", "nonsense")

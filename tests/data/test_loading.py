"""Reading items under the bad-file policy and the de-identification requirement."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medsight.data.folder import folder_dataset
from medsight.data.loading import NOT_DEIDENTIFIED, load_items
from medsight.errors import ConfigError, InputFileError
from medsight.io import make_image

from .pngs import write_png


@pytest.fixture
def items_with_one_corrupt(tmp_path: Path) -> list[dict]:
    for i in range(4):
        write_png(tmp_path / "data" / "a" / f"{i}.png", i)
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = folder_dataset(tmp_path / "data", fractions=(1.0, 0.0, 0.0))
    return data.train


def test_skip_policy_logs_each_file_and_a_summary(
    items_with_one_corrupt: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medsight.data.loading"):
        loaded, skipped = load_items(items_with_one_corrupt, policy="skip")
    assert len(loaded) == 4 and all(item["image"].shape == (1, 6, 6) for item in loaded)
    assert len(skipped) == 1 and skipped[0][0].endswith("broken.png")
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("skipping ") and "broken.png" in m for m in messages)
    assert "skipped 1 of 5 files" in messages
    assert all("\n" not in m for m in messages)


def test_fail_policy_raises_the_first_bad_file(items_with_one_corrupt: list[dict]) -> None:
    with pytest.raises(InputFileError, match="broken.png"):
        load_items(items_with_one_corrupt, policy="fail", progress=False)
    with pytest.raises(ConfigError):
        load_items(items_with_one_corrupt, policy="ignore")  # type: ignore[arg-type]


def test_tensors_pass_through_without_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    image = make_image(np.zeros((1, 4, 4)))
    items = [{"image": image, "label": 0, "patient_id": str(i), "id": str(i)} for i in range(60)]
    loaded, skipped = load_items(items)
    assert all(item["image"] is image for item in loaded) and not skipped
    assert "reading images" not in capsys.readouterr().err  # nothing is read from disk


def test_require_deidentified(tmp_path: Path) -> None:
    identified = Path(shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "identified.dcm"))
    ds = pydicom.dcmread(identified)
    ds.PatientIdentityRemoved = "YES"
    ds.save_as(tmp_path / "clean.dcm")
    items = [
        {"image": str(path), "label": 0, "patient_id": str(i), "id": str(i)}
        for i, path in enumerate([identified, tmp_path / "clean.dcm"])
    ]
    loaded, skipped = load_items(items, policy="skip", require_deidentified=True)
    assert [item["id"] for item in loaded] == ["1"]
    assert skipped == [(str(identified), NOT_DEIDENTIFIED)]
    assert NOT_DEIDENTIFIED.startswith("not de-identified (PatientIdentityRemoved != YES)")
    loaded, _ = load_items(items, require_deidentified=False)
    assert len(loaded) == 2

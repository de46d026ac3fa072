"""The clinical table encoder: fitted on training rows only, missing values, unseen categories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.errors import MedsightError
from medsight.transforms.clinical import MISSING, ClinicalEncoder

TRAIN = [
    {"age": "40", "sex": "F", "crp": "2.0", "site": "1"},
    {"age": "60", "sex": "M", "crp": "", "site": "2"},
    {"age": "80", "sex": "F", "crp": "NA", "site": "1"},
    {"age": "", "sex": "", "crp": "10.0", "site": "3"},
]


def fit(rows=TRAIN, categorical=("site",)) -> ClinicalEncoder:
    return ClinicalEncoder.fit(rows, ["age", "sex", "crp", "site"], categorical)


def test_numeric_columns_are_standardised_with_training_statistics():
    enc = fit()
    age = enc.columns[0]
    assert age.kind == "numeric"
    assert age.mean == pytest.approx(60.0) and age.std == pytest.approx(np.std([40, 60, 80]))
    table = enc.transform([{"age": "60", "sex": "F", "crp": "2", "site": "1"},
                           {"age": "100", "sex": "F", "crp": "2", "site": "1"}])
    i = enc.feature_names.index("age")
    assert table[0, i] == pytest.approx(0.0)
    assert table[1, i] == pytest.approx(40 / np.std([40, 60, 80]), rel=1e-5)


def test_missing_numbers_become_the_training_median_with_an_indicator():
    enc = fit()
    crp = enc.columns[2]
    assert crp.median == pytest.approx(6.0)  # of the observed 2.0 and 10.0
    names = enc.feature_names
    for token in ("", "NA", "nan", "None", "?", None):
        row = enc.transform([{"age": "60", "sex": "F", "crp": token, "site": "1"}])[0]
        assert row[names.index("crp:missing")] == 1.0
        assert row[names.index("crp")] == pytest.approx((6.0 - crp.mean) / crp.std)
    present = enc.transform([{"age": "60", "sex": "F", "crp": "6", "site": "1"}])[0]
    assert present[names.index("crp:missing")] == 0.0


def test_categories_are_one_hot_with_a_missing_slot_and_unseen_ones_all_zero():
    enc = fit()
    names = enc.feature_names
    sex = [n for n in names if n.startswith("sex=")]
    assert sex == ["sex=F", "sex=M", f"sex={MISSING}"]
    rows = enc.transform([{"age": "50", "sex": "M", "crp": "1", "site": "1"},
                          {"age": "50", "sex": "", "crp": "1", "site": "1"},
                          {"age": "50", "sex": "X", "crp": "1", "site": "9"}])
    idx = [names.index(n) for n in sex]
    assert rows[0, idx].tolist() == [0, 1, 0]
    assert rows[1, idx].tolist() == [0, 0, 1]
    assert rows[2, idx].tolist() == [0, 0, 0]  # never seen in training
    site = [names.index(n) for n in names if n.startswith("site=")]
    assert rows[2, site].sum() == 0


def test_number_like_codes_listed_as_categorical_are_not_standardised():
    assert fit(categorical=()).columns[3].kind == "numeric"
    enc = fit(categorical=("site",))
    assert enc.columns[3].kind == "categorical" and enc.columns[3].categories == ["1", "2", "3"]


def test_a_column_with_text_is_categorical_and_text_in_a_numeric_column_is_one_error():
    enc = fit()
    assert enc.columns[1].kind == "categorical"
    with pytest.raises(MedsightError, match=r"'age' of case c7: 'old' is not a number"):
        enc.transform([{"age": "old", "sex": "F", "crp": "1", "site": "1"}], ids=["c7"])


def test_a_column_without_any_training_value_is_refused():
    rows = [{"age": "", "sex": "F"}, {"age": "NA", "sex": "M"}]
    with pytest.raises(MedsightError, match="'age' has no values in the training split"):
        ClinicalEncoder.fit(rows, ["age", "sex"])


def test_the_fitted_encoder_survives_the_plan_json_round_trip():
    enc = fit()
    plan = json.loads(json.dumps(enc.to_plan()))
    assert plan["fitted_on"] == "train" and plan["features"] == enc.feature_names
    again = ClinicalEncoder.from_plan(plan)
    rows = [*TRAIN, {"age": "33", "sex": "X", "crp": "?", "site": "7"}]
    assert torch.equal(again.transform(rows), enc.transform(rows))

import numpy as np

from medsight.data.synthetic import CLASS_NAMES, synthetic_dataset, synthetic_sample
from medsight.io.image import spacing_of


def test_deterministic_and_independent_of_set_size():
    a = synthetic_sample(3, "train", 7)
    b = synthetic_dataset(n_train=10, n_val=2, n_test=2, seed=3).train[7]
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    assert a["label"] == b["label"]
    c = synthetic_sample(4, "train", 7)
    assert not np.array_equal(a["image"].numpy(), c["image"].numpy())


def test_ct_like_values_masks_and_labels():
    data = synthetic_dataset(n_train=60, n_val=4, n_test=4, size=64, nodule_fraction=0.5)
    assert data.class_names == CLASS_NAMES
    labels = np.array([it["label"] for it in data.train])
    assert 0.3 < labels.mean() < 0.7
    for item in data.train:
        hu = item["image"].numpy()
        assert hu.shape == (1, 64, 64)
        assert hu.min() < -900 and hu.max() > 300  # air and bone in HU
        assert item["image"].meta["modality"] == "CT"
        assert (item["mask"].numpy().sum() > 0) == bool(item["label"])
    assert spacing_of(data.train[0]["image"]) == (350 / 64, 350 / 64)


def test_nodules_lie_in_the_lungs():
    for i in range(30):
        item = synthetic_sample(0, "val", i)
        if item["label"]:
            mask = item["mask"].numpy()[0] > 0
            # before noise, a nodule replaces lung (-850 HU) with tissue-like values
            assert mask.sum() >= 4


def test_splits_do_not_share_patients():
    data = synthetic_dataset(n_train=20, n_val=5, n_test=5)
    ids = [set(it["patient_id"] for it in getattr(data, s)) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])

import numpy as np
import pytest

from medsight.data.medmnist import medmnist_dataset
from medsight.errors import InputFileError
from tests.conftest import SHARED_DATA


def _write(path, shape, n=(6, 3, 3), classes=2):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 255, (k, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % classes).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("shape,channels,dims", [((28, 28), 1, 2), ((28, 28, 3), 3, 2), ((28, 28, 28), 1, 3)])
def test_reads_official_splits(tmp_path, shape, channels, dims):
    arrays = _write(tmp_path / "toymnist.npz", shape)
    data = medmnist_dataset(tmp_path / "toymnist.npz")
    assert [len(data.train), len(data.val), len(data.test)] == [6, 3, 3]
    img = data.train[1]["image"]
    assert img.shape[0] == channels and img.ndim - 1 == dims
    raw = arrays["train_images"][1]
    expected = np.moveaxis(raw, -1, 0) if channels == 3 else raw[None]
    assert np.array_equal(img.numpy(), expected.astype(np.float32))
    assert data.train[1]["label"] == 1
    assert data.class_names == ["0", "1"]


def test_missing_split_is_a_named_error(tmp_path):
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(InputFileError, match="bad.npz"):
        medmnist_dataset(tmp_path / "bad.npz")


@pytest.mark.skipif(not (SHARED_DATA / "breastmnist" / "breastmnist.npz").is_file(), reason="shared data absent")
def test_real_breastmnist_matches_provenance():
    data = medmnist_dataset(SHARED_DATA / "breastmnist" / "breastmnist.npz")
    assert [len(data.train), len(data.val), len(data.test)] == [546, 78, 156]
    assert sum(it["label"] for it in data.test) == 114
    assert data.class_names == ["malignant", "normal, benign"]

"""The on-disk cache of preprocessed cases: built once, reused, rebuilt where files changed,
never left half-written, and read back the same whether in memory or streamed."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from medsight.config import config_from_dict
from medsight.data import cache as cache_mod
from medsight.data.cache import CachedImages, cache_info, case_key, clear_cache
from medsight.data.registry import build_dataset
from medsight.errors import InputFileError, MedsightError
from medsight.transforms import preprocessing
from medsight.utils.prefetch import prefetch


def _manifest(folder, n=30, size=(40, 60), masks=False):
    rng = np.random.default_rng(0)
    rows = ["path,mask,patient_id" if masks else "path,label,patient_id"]
    for i in range(n):
        a = rng.integers(0, 200, size).astype(np.uint8)
        a[10:20, 20:30] += 50 * (i % 2)
        Image.fromarray(a).save(folder / f"img{i}.png")
        if masks:
            m = np.zeros(size, np.uint8)
            m[10:20, 20:30] = i % 2
            Image.fromarray(m).save(folder / f"mask{i}.png")
            rows.append(f"img{i}.png,mask{i}.png,p{i}")
        else:
            rows.append(f"img{i}.png,{'yes' if i % 2 else 'no'},p{i}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def _cfg(manifest, cache_dir, **transforms):
    return config_from_dict({"data": {"dataset": "manifest", "path": str(manifest), "cache_dir": str(cache_dir)},
                             "model": {"spatial_dims": 2},
                             "transforms": {"intensity": "scale01", "intensity_range": [0, 255],
                                            "spatial_size": [32, 48], **transforms}})


def _prepare(cfg, splits=("train", "val")):
    from medsight.data.prepared import prepare_data

    return prepare_data(build_dataset(cfg.data, 0), cfg, splits)


def test_cached_images_equal_the_in_memory_preprocessing(tmp_path):
    from medsight.data.loading import load_item

    cfg = _cfg(_manifest(tmp_path), tmp_path / "cache")
    prepared, channels = _prepare(cfg)
    train = prepared["train"]
    assert isinstance(train.images, CachedImages) and channels == 1
    assert train.images.shape == torch.Size([len(train), 1, 32, 48])
    data = build_dataset(cfg.data, 0)
    pre = preprocessing(cfg.transforms, 2, 1)
    item = data.split("train")[3]
    direct = pre({"image": load_item(item, False)["image"]})["image"]
    # uint8 storage of an 8-bit picture scaled from [0, 255]: within half a grey level
    assert torch.allclose(train.images[3], direct.as_tensor().float(), atol=0.5 / 255 + 1e-6)
    assert train.sources[3].endswith(os.path.basename(item["image"]))
    assert train.labels.tolist() == [int(it["label"]) for it in data.split("train")]


def test_streamed_and_in_memory_reads_agree(tmp_path, monkeypatch):
    cfg = _cfg(_manifest(tmp_path), tmp_path / "cache")
    ram = _prepare(cfg)[0]["train"].images
    monkeypatch.setattr(cache_mod, "RAM_LIMIT_BYTES", 0)
    disk = _prepare(cfg)[0]["train"].images
    assert ram.in_memory and not disk.in_memory
    idx = torch.tensor([5, 0, 2])
    for index in (idx, [5, 0, 2], slice(1, 7, 2)):
        assert torch.equal(ram[index], disk[index])
    assert torch.equal(ram[4], disk[4]) and disk[4].dtype == torch.float32
    assert disk[[]].shape == (0, 1, 32, 48)


def test_a_rerun_reads_the_cache_and_a_changed_file_is_rebuilt_alone(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path)
    cfg = _cfg(manifest, tmp_path / "cache")
    _prepare(cfg)
    built = []
    real = cache_mod.build_entries

    def counting(items, store, make, **kw):
        def counted(item):
            built.append(item["image"])
            return make(item)
        return real(items, store, counted, **{**kw, "workers": 0})

    monkeypatch.setattr("medsight.data.prepared.build_entries", counting)
    _prepare(cfg)
    assert built == []  # everything came from the cache
    img = build_dataset(cfg.data, 0).split("train")[3]["image"]
    Image.fromarray(np.full((40, 60), 7, np.uint8)).save(img)
    os.utime(img, ns=(1, 1))  # a different mtime even on a coarse clock
    prepared, _ = _prepare(cfg)
    assert built == [img]
    assert torch.allclose(prepared["train"].images[3], torch.full((1, 32, 48), 7 / 255))


def test_another_setting_gets_its_own_folder(tmp_path):
    manifest = _manifest(tmp_path)
    _prepare(_cfg(manifest, tmp_path / "cache"))
    _prepare(_cfg(manifest, tmp_path / "cache", spatial_size=[24, 24]))
    rows = cache_info(tmp_path / "cache")
    assert len(rows) == 2 and all(r["task"] == "classification" for r in rows)
    assert sorted(r["cases"] for r in rows)[0] > 0
    freed = clear_cache(tmp_path / "cache")
    assert freed > 0 and not (tmp_path / "cache").exists()


def test_a_killed_build_leaves_no_entry_that_looks_complete(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path, n=6)
    cfg = _cfg(manifest, tmp_path / "cache")
    calls = {"n": 0}
    real = cache_mod.CaseStore.put

    def dying_put(self, key, meta, arrays):
        calls["n"] += 1
        if calls["n"] == 3:  # the array written, then killed before the metadata
            for suffix, array in arrays.items():
                cache_mod.write_array(self.path(key, suffix), array)
            raise KeyboardInterrupt
        return real(self, key, meta, arrays)

    monkeypatch.setattr(cache_mod.CaseStore, "put", dying_put)
    with pytest.raises(KeyboardInterrupt):
        _prepare(cfg, splits=("train",))
    monkeypatch.setattr(cache_mod.CaseStore, "put", real)
    prepared, _ = _prepare(cfg, splits=("train",))
    assert len(prepared["train"]) == len(build_dataset(cfg.data, 0).split("train"))
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_bad_file_fails_or_is_skipped_by_policy(tmp_path):
    manifest = _manifest(tmp_path, n=30)
    cfg = _cfg(manifest, tmp_path / "cache")
    train0 = build_dataset(cfg.data, 0).split("train")[0]["image"]
    with open(train0, "wb") as fh:
        fh.write(b"not a png at all")
    with pytest.raises(InputFileError, match=os.path.basename(train0)):
        _prepare(cfg)
    skip = _cfg(manifest, tmp_path / "cache")
    skip.data.bad_files = "skip"
    data = build_dataset(skip.data, 0)
    from medsight.data.prepared import prepare_data

    prepared, _ = prepare_data(data, skip, ("train",))
    assert len(prepared["train"]) == len(data.split("train")) - 1
    assert [os.path.basename(f) for f, _ in data.skipped] == [os.path.basename(train0)]
    # each kept image keeps its own label and source: a skipped file shifts nothing
    kept = data.split("train")[1:]
    assert prepared["train"].labels.tolist() == [int(it["label"]) for it in kept]
    assert [os.path.basename(s) for s in prepared["train"].sources] == [os.path.basename(it["image"]) for it in kept]


def test_unwritable_cache_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = _cfg(_manifest(tmp_path, n=6), blocker / "cache")
    with pytest.raises(MedsightError):
        _prepare(cfg, splits=("train",))


def test_the_case_key_follows_the_files(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"1")
    item = {"image": str(a), "id": "a"}
    k1 = case_key(item)
    assert case_key(dict(item)) == k1
    a.write_bytes(b"22")
    assert case_key(item) != k1
    assert case_key({**item, "mask": str(a)}) != case_key(item)


def test_segmentation_cases_read_whole_or_as_patches(tmp_path):
    from medsight.data.prepared import prepare_cached_cases

    cfg = _cfg(_manifest(tmp_path, n=8, masks=True), tmp_path / "cache", spatial_size=None, intensity="zscore")
    data = build_dataset(cfg.data, 0)
    pre = preprocessing(cfg.transforms, 2, 1, mask_keys=["mask"])
    cases, skipped = prepare_cached_cases(data.split("train"), cfg, pre, 2, 1)
    assert not skipped and len(cases) == len(data.split("train"))
    image, mask = cases.read(1)
    assert image.shape == (1, 40, 60) and mask.shape == (40, 60) and mask.dtype == torch.uint8
    region = (slice(5, 25), slice(15, 35))
    patch, mpatch = cases.read(1, region)
    assert torch.equal(patch, image[(slice(None), *region)]) and torch.equal(mpatch, mask[region])
    for i in range(len(cases)):
        locs = cases.locations(i)
        m = cases.read(i)[1]
        if m.any():
            assert set(locs) == {1} and all(m[tuple(p)] == 1 for p in locs[1])
        else:
            assert locs == {}


def test_prefetch_keeps_order_raises_in_place_and_stops():
    assert list(prefetch(range(20), lambda k: k * k)) == [k * k for k in range(20)]

    def read(k):
        if k == 3:
            raise ValueError("bad batch 3")
        return k

    got = []
    with pytest.raises(ValueError, match="bad batch 3"):
        for v in prefetch(range(10), read):
            got.append(v)
    assert got == [0, 1, 2]
    it = prefetch(range(1000), lambda k: k)
    assert next(it) == 0
    it.close()  # the reader thread ends; nothing hangs


def test_training_and_evaluation_share_one_folder(tmp_path):
    """Training resolves the channel count itself; evaluate passes it from the plan."""
    from medsight.data.prepared import prepare_data

    manifest = _manifest(tmp_path)
    _prepare(_cfg(manifest, tmp_path / "cache"))
    later = _cfg(manifest, tmp_path / "cache", channels=1)
    prepare_data(build_dataset(later.data, 0), later, ("train", "test"), channels=1)
    rows = cache_info(tmp_path / "cache")
    assert len(rows) == 1 and rows[0]["cases"] == 30


def test_the_fingerprint_is_read_once_per_sample(tmp_path):
    from medsight.data.cache import remembered

    calls = []

    def compute():
        calls.append(1)
        return {"n_cases": 3, "shape_median": [10.0, 12.0]}

    a = remembered(tmp_path, "classification", {"sample": ["k1", "k2"]}, compute)
    b = remembered(tmp_path, "classification", {"sample": ["k1", "k2"]}, compute)
    c = remembered(tmp_path, "classification", {"sample": ["k1", "k3"]}, compute)  # another file
    assert a == b == c == {"n_cases": 3, "shape_median": [10.0, 12.0]} and len(calls) == 2
    assert cache_info(tmp_path) == []  # not a settings folder


def test_the_build_starts_its_workers_once(tmp_path, monkeypatch):
    """One set of worker processes per build: a progress bar that also iterates the loader
    (tqdm.auto does, on construction) starts a second set that sits idle holding memory."""
    manifest = _manifest(tmp_path, n=cache_mod.PARALLEL_FROM + 16)
    cfg = _cfg(manifest, tmp_path / "cache")
    started = []
    real_iter = torch.utils.data.DataLoader.__iter__

    def counting_iter(self):
        started.append(self.num_workers)
        return real_iter(self)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", counting_iter)
    prepared, _ = _prepare(cfg, splits=("train",))
    assert len(prepared["train"]) >= cache_mod.PARALLEL_FROM
    assert started == [min(os.cpu_count() or 1, 4)]

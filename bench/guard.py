"""The input guard on real data: OOD AUROC of two scores, and how much foreign input it stops.

    nice -n 19 python bench/guard.py [RUN] [--data breastmnist.npz] [--minutes 3] [--ct-run RUN] [--n 200]

Trains a planned run on ``--data`` for ``--minutes`` (unless RUN is given; its profile is fitted
at the end of training), then prints:

1. AUROC of the Mahalanobis score (penultimate features, Lee et al. 2018) and of the energy
   score (logits, Liu et al. 2020) between the run's own test split (in distribution) and each
   foreign set: the other MedMNIST 2D set here (RetinaMNIST, made grey), middle slices of
   AdrenalMNIST3D, synthetic CT slices, colour fundus photographs and blood smears (grey);
   BUSI (breast ultrasound from another source: the same modality) is shown as near-OOD.
2. The share of the test split the guard flags (target <= 10%) and refuses (target 0).
3. The share of clearly foreign inputs refused or flagged (target >= 99%): colour photographs
   (RGB noise and gradients), whole 3D volumes to a 2D model, and with ``--ct-run`` (a run on
   grey CT, e.g. the demo's) pydicom's MR_small.dcm and the colour photographs sent to it.
Targets (issue 18): AUROC >= 0.90, <= 10% of in-distribution flagged, >= 99% of foreign caught.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"


def train(data: Path, minutes: float, out: Path) -> Path:
    from medsight.config import load_config
    from medsight.evaluation.calibrate import calibrate_run
    from medsight.training.run import planned_overrides, train_run

    cfg = load_config(None, planned_overrides(data, minutes))
    return train_run(cfg, out, calibrate=calibrate_run)


def grey(a: np.ndarray) -> np.ndarray:
    return a.mean(-1) if a.ndim == 3 else a


def foreign_sets(n: int) -> dict[str, list[np.ndarray]]:
    """Grey 2D arrays (H, W) of each foreign set, at most ``n`` each, in a fixed order."""
    from PIL import Image

    from medsight.data.synthetic import synthetic_sample

    sets: dict[str, list[np.ndarray]] = {}
    retina = DATA / "retinamnist" / "retinamnist.npz"
    if retina.is_file():
        sets["retinamnist (grey)"] = [grey(a.astype(np.float32)) for a in np.load(retina)["test_images"][:n]]
    adrenal = DATA / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if adrenal.is_file():
        vols = np.load(adrenal)["test_images"][:n].astype(np.float32)
        sets["adrenalmnist3d mid-slices"] = [v[v.shape[0] // 2] * (255.0 / max(v.max(), 1)) for v in vols]
    sets["synthetic CT (HU)"] = [synthetic_sample(0, "test", i)["image"][0].numpy() for i in range(min(n, 100))]
    for name, folder, pattern in (("fundus-dr (grey)", "fundus-dr/images", "*.jpg"),
                                  ("bccd smears (grey)", "bccd/JPEGImages", "*.jpg"),
                                  ("busi ultrasound (near-OOD)", "busi/images", "*.jpg")):
        files = sorted((DATA / folder).glob(pattern))[:n]
        if files:
            sets[name] = [np.asarray(Image.open(f).convert("L"), np.float32) for f in files]
    return sets


def model_space(run, arrays) -> torch.Tensor:
    from medsight.inference.predict import model_input
    from medsight.io.validate import as_image

    return torch.stack([model_input(run, as_image(a)) for a in arrays])


def scores(run, guard, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    from medsight.inference.guard import energy_scores, features_and_logits, score_features

    feats, logits = features_and_logits(run, x)
    return score_features({**guard.ood, "method": "mahalanobis"}, feats, logits), energy_scores(logits)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from medsight.metrics.classification import auc_score

    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    s = np.r_[inside, outside]
    return auc_score(y.astype(int), np.c_[-s, s])


def photos(n: int) -> list[np.ndarray]:
    """Colour photograph stand-ins (3, H, W) in 0..255: RGB noise and colour gradients."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        h, w = rng.integers(48, 160, 2)
        if i % 2:
            out.append(rng.integers(0, 256, (3, h, w)).astype(np.float32))
        else:
            yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
            c = rng.uniform(0, 255, (3, 3))
            out.append(np.stack([c[k, 0] * xx + c[k, 1] * yy + c[k, 2] * (1 - xx) for k in range(3)]).astype(np.float32)
                       % 256)
    return out


def caught(run, arrays_or_images) -> tuple[float, str]:
    """Share refused or flagged by the whole guard (raw checks, then the score); a sample reason."""
    from medsight.errors import MedsightError
    from medsight.inference.guard import check_image, ood_fields
    from medsight.inference.predict import model_input
    from medsight.io.validate import as_image

    hits, reason = 0, ""
    for a in arrays_or_images:
        image = as_image(a)
        try:
            why, caveat = check_image(run, image, "input", allow_foreign=True)
            if why:
                hits, reason = hits + 1, reason or why
                continue
            verdict = ood_fields(run, model_input(run, image)[None], [None], False, [caveat])[0]
        except MedsightError as exc:  # unreadable by the model at all: refused
            hits, reason = hits + 1, reason or str(exc)
            continue
        if isinstance(verdict, str) or verdict.get("out_of_distribution"):
            hits += 1
            reason = reason or (verdict if isinstance(verdict, str) else f"flagged (score {verdict['ood_score']})")
    return hits / max(len(arrays_or_images), 1), reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--data", type=Path, default=DATA / "breastmnist" / "breastmnist.npz")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--ct-run", type=Path, help="a run on grey CT (MR and photos sent to it)")
    parser.add_argument("--n", type=int, default=200, help="images per foreign set")
    args = parser.parse_args()
    from medsight.evaluation.calibrate import val_split
    from medsight.inference.guard import guard_of
    from medsight.inference.load import load_run

    torch.set_num_threads(2)
    run_dir = args.run or train(args.data, args.minutes, Path(tempfile.mkdtemp(prefix="bench-guard-")) / "run")
    run = load_run(run_dir, prefer_onnx=False)
    guard = guard_of(run)
    if guard is None:
        sys.exit(f"{run_dir}: no input profile; run `medsight calibrate {run_dir}` first")
    test = val_split(run, "test").images.float()
    maha_in, energy_in = scores(run, guard, test)
    verdicts = [guard.judge(s) for s in maha_in]
    print(f"run {run_dir}; guard: {guard.ood['method']}, flag > {guard.ood['flag_threshold']:.3g}, "
          f"refuse > {guard.ood['refuse_threshold']:.3g}\n")
    print(f"{'foreign set (vs own test split)':34s} {'n':>5s} {'AUROC maha':>11s} {'AUROC energy':>13s} "
          f"{'flagged':>8s} {'refused':>8s}")
    for name, arrays in foreign_sets(args.n).items():
        maha, energy = scores(run, guard, model_space(run, arrays))
        judged = [guard.judge(s) for s in maha]
        print(f"{name:34s} {len(arrays):5d} {auroc(maha_in, maha):11.3f} {auroc(energy_in, energy):13.3f} "
              f"{np.mean([j == 'flag' for j in judged]):8.1%} {np.mean([j == 'refuse' for j in judged]):8.1%}")
    print(f"\nin distribution ({len(test)} test images): flagged {verdicts.count('flag') / len(test):.1%}, "
          f"refused {verdicts.count('refuse') / len(test):.1%} "
          f"(flag share chosen on val: {guard.ood['flag_fraction']:.0%})\n")
    rows = [("colour photographs", run, photos(100))]
    adrenal = DATA / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if adrenal.is_file():
        rows.append(("3D volumes to the 2D model", run, [v[None].astype(np.float32)
                                                        for v in np.load(adrenal)["test_images"][:100]]))
    if args.ct_run:
        from pydicom.data import get_testdata_file

        from medsight.io import read_image

        ct = load_run(args.ct_run, prefer_onnx=False)
        rows += [("MR_small.dcm to the CT run", ct, [read_image(get_testdata_file("MR_small.dcm"))]),
                 ("colour photographs to the CT run", ct, photos(100))]
    print(f"{'clearly foreign':34s} {'n':>5s} {'caught':>8s}  first reason")
    for name, target, items in rows:
        share, reason = caught(target, items)
        print(f"{name:34s} {len(items):5d} {share:8.1%}  {reason[:90]}")


if __name__ == "__main__":
    main()

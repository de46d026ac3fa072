"""The input guard on real data: OOD AUROC of three scores, and how much foreign input it stops.

    nice -n 19 python bench/guard.py [RUN] [--data breastmnist.npz] [--minutes 3] [--ct-run RUN]
                                     [--n 200] [--json OUT]

Trains a planned run on ``--data`` for ``--minutes`` (unless RUN is given; its profile is fitted
at the end of training, or refitted by ``medsight calibrate RUN``), then prints:

1. AUROC between the run's own test split (in distribution) and each foreign set of the guard's
   score (the feature ensemble, ``inference/ood_score.py``), of its penultimate layer alone (the
   Mahalanobis score of profile version 1, Lee et al. 2018: the baseline) and of the energy
   score (logits, Liu et al. 2020). Foreign sets: the other MedMNIST sets in ../shared/data
   (BreastMNIST, RetinaMNIST made grey, middle slices of AdrenalMNIST3D; the one trained on is
   left out), synthetic CT slices, fundus photographs and blood smears (grey); BUSI (breast
   ultrasound from another source: the same modality) is shown as near-OOD.
2. The share of the test split the guard flags (target <= 10%) and refuses (target 0).
3. The share of clearly foreign inputs refused or flagged (target >= 99%): colour photographs
   (RGB noise and gradients), whole 3D volumes to a 2D model, and with ``--ct-run`` (a run on
   grey CT, e.g. the demo's) pydicom's MR_small.dcm and the colour photographs sent to it.
4. What the guard costs: milliseconds per single-image prediction, the forward pass alone and
   with the guard's taps and score.
Targets (issue 18): AUROC >= 0.90, <= 10% of in-distribution flagged, >= 99% of foreign caught.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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


def foreign_sets(n: int, own: Path) -> dict[str, list[np.ndarray]]:
    """Grey 2D arrays (H, W) of each foreign set, at most ``n`` each, in a fixed order; the
    MedMNIST set in ``own`` (the training data) is left out."""
    from PIL import Image

    from medsight.data.synthetic import synthetic_sample

    sets: dict[str, list[np.ndarray]] = {}
    for name in ("breastmnist", "retinamnist"):
        path = DATA / name / f"{name}.npz"
        if path.is_file() and path.resolve() != own.resolve():
            sets[f"{name} (grey)"] = [grey(a.astype(np.float32)) for a in np.load(path)["test_images"][:n]]
    adrenal = DATA / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if adrenal.is_file() and adrenal.resolve() != own.resolve():
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


SCORES = ("ensemble", "penultimate", "energy")


def scores(run, guard, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The guard's score, its penultimate layer's alone (version 1's, up to scale) and energy."""
    from medsight.inference.guard import layer_features, profile_taps
    from medsight.inference.ood_score import PENULTIMATE, energy_scores, layer_scores, ood_scores

    feats, logits = layer_features(run, x, profile_taps(guard.ood))
    return {"ensemble": ood_scores(guard.ood, feats, logits),
            "penultimate": layer_scores(guard.ood, feats)[PENULTIMATE], "energy": energy_scores(logits)}


def milliseconds(run, guard, x: torch.Tensor, repeats: int = 20) -> dict[str, float]:
    """Per single-image call, the median over interleaved calls (the machine is shared): the
    forward pass alone, and with the guard's taps and score."""
    from medsight.inference.guard import features_and_logits

    calls = {"forward": lambda: features_and_logits(run, x), "guarded": lambda: guard.scores(run, x)}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: float(np.median(t[1:])) for name, t in times.items()}


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
    parser.add_argument("--json", type=Path, help="also write the figures here")
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
    inside = scores(run, guard, test)
    verdicts = [guard.judge(s) for s in inside["ensemble"]]
    print(f"run {run_dir}; guard: {guard.ood['method']} (profile version {guard.ood.get('version', 1)}), "
          f"flag > {guard.ood['flag_threshold']:.3g}, refuse > {guard.ood['refuse_threshold']:.3g}\n")
    print(f"{'foreign set (vs own test split)':34s} {'n':>5s} {'AUROC guard':>12s} {'penultimate':>12s} "
          f"{'energy':>8s} {'flagged':>8s} {'refused':>8s}")
    result: dict = {"run": str(run_dir), "ood": {k: guard.ood.get(k) for k in ("method", "version", "flag_threshold",
                                                                                "refuse_threshold")},
                    "foreign": {}}
    for name, arrays in foreign_sets(args.n, args.data).items():
        outside = scores(run, guard, model_space(run, arrays))
        judged = [guard.judge(s) for s in outside["ensemble"]]
        row = {"n": len(arrays), **{f"auroc_{k}": auroc(inside[k], outside[k]) for k in SCORES},
               "flagged": float(np.mean([j == "flag" for j in judged])),
               "refused": float(np.mean([j == "refuse" for j in judged]))}
        result["foreign"][name] = row
        print(f"{name:34s} {len(arrays):5d} {row['auroc_ensemble']:12.3f} {row['auroc_penultimate']:12.3f} "
              f"{row['auroc_energy']:8.3f} {row['flagged']:8.1%} {row['refused']:8.1%}")
    result["in_distribution"] = {"n": len(test), "flagged": verdicts.count("flag") / len(test),
                                 "refused": verdicts.count("refuse") / len(test)}
    print(f"\nin distribution ({len(test)} test images): flagged {verdicts.count('flag') / len(test):.1%}, "
          f"refused {verdicts.count('refuse') / len(test):.1%} "
          f"(flag share chosen on val: {guard.ood['flag_fraction']:.0%})")
    result["ms_per_image"] = milliseconds(run, guard, test[:1])
    print("one image: forward {forward:.1f} ms, with the guard's taps and score {guarded:.1f} ms\n".format(
        **result["ms_per_image"]))
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
    result["clearly_foreign"] = {}
    for name, target, items in rows:
        share, reason = caught(target, items)
        result["clearly_foreign"][name] = {"n": len(items), "caught": share}
        print(f"{name:34s} {len(items):5d} {share:8.1%}  {reason[:90]}")
    if args.json:
        from medsight.utils.atomic import write_json

        write_json(args.json, result)


if __name__ == "__main__":
    main()

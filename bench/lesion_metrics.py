"""Time of the segmentation metrics, lesion extraction and FROC on synthetic data of realistic size.

    python bench/lesion_metrics.py [--rounds 5]

Workloads (all synthetic, seeded): ``case_metrics`` on a hippocampus-sized case (2 classes,
~36x50x35) and on a CT-sized one (512x512x200, a 170 mm organ, 0.8x0.8x2.5 mm); ``summarize``
over 200 cases x 2 classes with 1000 resamples; ``find_lesions`` on a 512x512x200 probability
map with 30 nodules and one large component; ``froc`` over 100 scans of 128³. The workloads run
in turns (A, B, C, A, B, C, ...) and the table gives the median seconds per call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from medsight.evaluation.froc import froc
from medsight.evaluation.segmentation import case_metrics, summarize
from medsight.inference.lesions import find_lesions, label_lesions
from medsight.runtime import cpu_description


def ellipsoid(shape, centre, radii_vox) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii_vox)) <= 1.0


def workloads() -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    names = ["background", "anterior", "posterior"]
    hippo_ref = np.zeros((36, 50, 35), np.uint8)
    hippo_ref[ellipsoid(hippo_ref.shape, (18, 18, 17), (6, 9, 5))] = 1
    hippo_ref[ellipsoid(hippo_ref.shape, (18, 32, 17), (5, 8, 5))] = 2
    hippo_pred = np.roll(hippo_ref, 1, axis=1)

    spacing = (0.8, 0.8, 2.5)
    ct_ref = ellipsoid((512, 512, 200), (256, 256, 100), (106, 106, 34)).astype(np.uint8)
    ct_pred = np.roll(ct_ref, 3, axis=0)

    rows = [{"case": str(i), "anterior": {"dice": d, "iou": d, "hd95_mm": 2.0, "msd_mm": 0.5, "volume_pred": 1.0,
                                          "volume_ref": 1.0, "abs_volume_error": 0.0, "rel_volume_error": 0.0},
             "posterior": {"dice": d / 2, "iou": d, "hd95_mm": None, "msd_mm": 0.5, "volume_pred": 1.0,
                           "volume_ref": 1.0, "abs_volume_error": 0.0, "rel_volume_error": None}}
            for i, d in enumerate(rng.uniform(0.6, 0.95, 200))]

    prob = np.zeros((512, 512, 200), np.float32)
    for _ in range(30):
        c = rng.integers(20, [492, 492, 180])
        prob[ellipsoid(prob.shape, c, (4, 4, 2))] = rng.uniform(0.5, 1.0)
    prob[ellipsoid(prob.shape, (256, 256, 100), (60, 60, 20))] = 0.8

    scans = []
    for _ in range(100):
        ref = np.zeros((128, 128, 128), np.uint8)
        p = np.zeros(ref.shape, np.float32)
        for _ in range(3):
            c = rng.integers(10, 118, 3)
            ref[ellipsoid(ref.shape, c, (3, 3, 3))] = 1
            p[ellipsoid(ref.shape, c + rng.integers(-1, 2, 3), (3, 3, 3))] = rng.uniform(0.5, 1.0)
        for _ in range(5):
            p[ellipsoid(ref.shape, rng.integers(10, 118, 3), (2, 2, 2))] = rng.uniform(0.5, 1.0)
        lesions, labels = label_lesions(p, np.eye(4))
        scans.append((lesions, ref, labels))

    return {
        "case_metrics hippocampus 36x50x35, 2 classes": lambda: case_metrics(hippo_pred, hippo_ref, (1, 1, 1), names),
        "case_metrics CT 512x512x200, 1 organ": lambda: case_metrics(ct_pred, ct_ref, spacing, names[:2]),
        "summarize 200 cases x 2 classes, 1000 resamples": lambda: summarize(rows, names),
        "find_lesions 512x512x200, 31 lesions": lambda: find_lesions(prob, np.diag([*spacing, 1.0])),
        "froc 100 scans (centre rule)": lambda: froc([s[:2] for s in scans]),
        "froc 100 scans (IoU rule)": lambda: froc(scans, hit_rule="iou"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jobs = workloads()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    cpu = cpu_description()
    print(f"CPU: {cpu['model']} (native bf16: {cpu['bf16_native']}); median of {args.rounds} alternated rounds")
    width = max(map(len, jobs))
    print(f"{'workload':<{width}}  seconds")
    for name, values in times.items():
        print(f"{name:<{width}}  {statistics.median(values):7.3f}")


if __name__ == "__main__":
    main()

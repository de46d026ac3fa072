"""Similar-case search measured on a test split: label agreement of the nearest indexed cases.

Used by ``bench/label_efficiency.py --similar K``: the training split is indexed with a run's
encoder (``medsight index``), each test image's K nearest training cases are found, and their
labels compared with the test image's: top-1 agreement, the K neighbours' majority vote, their
share of the test image's label (P@K), and chance (two random cases of the sets agreeing).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np


def retrieval(work: Path, dataset: str, encoder: str, run: Path, cases: list[dict], k: int,
              draws: int = 1000) -> dict:
    """Similar-case search on the test split: the training split indexed with ``run``'s
    encoder (``medsight index``), each test image's ``k`` nearest training cases, and how
    often their labels agree with the test image's (percentile bootstrap CIs over test cases)."""
    from medsight.inference.embed import embed_paths, load_encoder
    from medsight.inference.similar import build_index, load_index

    folder = work / "similar" / encoder
    train_rows = [c for c in cases if c["split"] == "train"]
    test_rows = [c for c in cases if c["split"] == "test"]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.csv", "w", newline="") as fh:  # the archive to index
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "patient_id", "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(train_rows)
    build_index(run, folder / "train.csv", folder / "index")
    index = load_index(folder / "index", load_encoder(run))
    vectors, _ = embed_paths(run, [Path(c["path"]) for c in test_rows], folder / "test")
    t0 = time.perf_counter()
    found = index.query(vectors, k)
    query_ms = 1000 * (time.perf_counter() - t0) / max(len(test_rows), 1)
    truth = [c["label"] for c in test_rows]
    top1 = np.array([n[0]["label"] == t for n, t in zip(found, truth)], float)
    vote = np.array([max(set(ls := [x["label"] for x in n]), key=ls.count) == t for n, t in zip(found, truth)], float)
    share = np.array([np.mean([x["label"] == t for x in n]) for n, t in zip(found, truth)])
    labels = sorted(set(truth))
    chance = sum(np.mean([c["label"] == y for c in train_rows]) * np.mean([t == y for t in truth]) for y in labels)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(truth), size=(draws, len(truth)))

    def ci(x: np.ndarray) -> list[float]:
        return [round(float(v), 3) for v in np.percentile(x[picks].mean(1), [2.5, 97.5])]

    return {"dataset": dataset, "encoder": encoder, "run": str(run), "k": k, "queries": len(truth),
            "indexed": len(train_rows), "top1": round(float(top1.mean()), 3), "top1_ci": ci(top1),
            f"top{k}_vote": round(float(vote.mean()), 3), f"top{k}_vote_ci": ci(vote),
            f"precision_at_{k}": round(float(share.mean()), 3), "chance": round(float(chance), 3),
            "query_ms": round(query_ms, 3)}


def print_rows(rows: list[dict]) -> None:
    k = rows[0]["k"]
    print(f"\nSimilar cases: the {k} nearest training cases of each test image (exact cosine search); "
          "label agreement, 95% CI by case bootstrap")
    print(f"{'dataset':<10} {'encoder':<24} {'top-1':>6} {'95% CI':<15} {f'top-{k} vote':>10} {'95% CI':<15} "
          f"{f'P@{k}':>6} {'chance':>6} {'ms/query':>8}")
    for r in rows:
        print(f"{r['dataset']:<10} {r['encoder']:<24} {r['top1']:>6.3f} {_ci(r['top1_ci']):<15} "
              f"{r[f'top{k}_vote']:>10.3f} {_ci(r[f'top{k}_vote_ci']):<15} {r[f'precision_at_{k}']:>6.3f} "
              f"{r['chance']:>6.3f} {r['query_ms']:>8.2f}")


def _ci(ci: list[float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"

"""Statistics of the label-efficiency benches: seed means with case-bootstrap CIs, and issue
17's targets (pretrained against scratch at the fewest labels and at all of them)."""

from __future__ import annotations

import numpy as np

TARGET_GAIN = 0.05  # issue 17: at 10% labels, pretrained beats scratch by at least this AUC
FEW_LABELS = 0.1  # the gain target is for the smallest fraction only if it is at most this
NO_WORSE = 0.01  # at 100%, "no worse": pretrained trails scratch by at most this (seed noise)


def seed_mean_draws(labels: list[int], p_per_seed: list[list[float]], n: int = 1000) -> np.ndarray:
    """The AUC averaged over seeds on each of ``n`` bootstrap resamples of the test cases (the
    same resamples for every seed, and for every call on the same test split: paired)."""
    from medsight.evaluation.bootstrap import nanmean, resample_blocks
    from medsight.evaluation.classification import resample_metrics

    y = np.asarray(labels)
    probs = [np.stack([1 - np.asarray(p), np.asarray(p)], axis=1) for p in p_per_seed]
    means = [nanmean(np.stack([resample_metrics(y, pr, pr.argmax(1), idx)["auc"] for pr in probs]), axis=0)
             for idx in resample_blocks(len(y), n, np.random.default_rng(0))]
    return np.concatenate(means)


def interval(draws: np.ndarray, level: float = 0.95) -> list[float | None]:
    from medsight.evaluation.bootstrap import percentile_interval

    return [None if v is None else round(v, 4) for v in percentile_interval(draws, level)]


def seed_mean_ci(labels: list[int], p_per_seed: list[list[float]], n: int = 1000, level: float = 0.95
                 ) -> list[float | None]:
    """Percentile-bootstrap CI over test cases of the AUC averaged over seeds."""
    return interval(seed_mean_draws(labels, p_per_seed, n), level)


def summarise(dataset: str, fraction: float, init: str, seeds: list[int], results: list[dict]) -> dict:
    """One table row: the seeds' AUCs, their mean, sd and the seed-mean CI."""
    ids = results[0]["test"]["id"]
    if any(r["test"]["id"] != ids for r in results):
        raise RuntimeError(f"{dataset}: the runs were tested on different cases")
    aucs = [r["auc"] for r in results]
    valid = [a for a in aucs if a is not None]
    return {
        "dataset": dataset, "fraction": fraction, "init": init, "seeds": seeds,
        "auc": round(float(np.mean(valid)), 4) if valid else None,
        "auc_sd": round(float(np.std(valid, ddof=1)), 4) if len(valid) > 1 else 0.0,
        "auc_ci": seed_mean_ci(results[0]["test"]["label"], [r["test"]["p"] for r in results]),
        "auc_per_seed": aucs, "test_cases": len(ids),
        "train_images": [r["train_images"] for r in results], "train_patients": [r["train_patients"] for r in results],
        "minutes": results[0]["minutes"], "train_seconds": [r["train_seconds"] for r in results],
        "epochs": [r["epochs"] for r in results], "loaded_weights": [r["loaded_weights"] for r in results],
        "model": results[0]["model"], "input_shape": results[0]["input_shape"],
    }


def targets(fractions: list[float]) -> list[tuple[float, float | None]]:
    """(fraction, least gain) for each of ``fractions``, issue 17's targets: +0.05 at the smallest
    if it is at most 10% (few labels), no worse at 100%; None (the gain alone) between them."""
    few = min(fractions)
    return [(f, TARGET_GAIN if f == few and f <= FEW_LABELS else -NO_WORSE if f == 1.0 else None)
            for f in fractions]


def judged(verdict: dict) -> str:
    """A verdict's target and outcome, for the printed table."""
    need = verdict["need"]
    if need is None:
        return "no target at this fraction"
    goal = f">= +{need:.2f}" if need > 0 else f">= {need:.2f} (no worse)"
    return f"needs {goal}: {'MET' if verdict['met'] else 'NOT MET'}"


def verdicts(rows: list[dict], tests: dict[tuple, tuple] | None = None, metric: str = "auc") -> list[dict]:
    """The targets per data set, on the seed means of ``metric``, with the gain on each seed's
    subset; with ``tests`` ((dataset, fraction, init) -> (labels, p per seed)), the gain's 95% CI
    by paired case bootstrap."""
    auc = {(r["dataset"], r["fraction"], r["init"]): r[metric] for r in rows}
    per_seed = {(r["dataset"], r["fraction"], r["init"]): dict(zip(r.get("seeds", []), r.get(f"{metric}_per_seed", [])))
                for r in rows}
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for fraction, need in targets(sorted({r["fraction"] for r in rows if r["dataset"] == dataset})):
            p, s = auc.get((dataset, fraction, "pretrained")), auc.get((dataset, fraction, "scratch"))
            if p is None or s is None:
                continue
            verdict = {"dataset": dataset, "fraction": fraction, "gain": round(p - s, 4), "need": need,
                       "met": None if need is None else bool(p - s >= need)}
            pp, ss = per_seed[dataset, fraction, "pretrained"], per_seed[dataset, fraction, "scratch"]
            paired = [k for k in pp if k in ss and pp[k] is not None and ss[k] is not None]
            if paired:  # a seed draws the same label subset for both arms
                verdict["gain_per_seed"] = {str(k): round(pp[k] - ss[k], 4) for k in paired}
            if tests and (dataset, fraction, "scratch") in tests:
                gain = (seed_mean_draws(*tests[dataset, fraction, "pretrained"])
                        - seed_mean_draws(*tests[dataset, fraction, "scratch"]))
                verdict["gain_ci"] = interval(gain)
            out.append(verdict)
    return out

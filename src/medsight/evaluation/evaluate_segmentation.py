"""``medsight evaluate`` for a segmentation run: per-class overlap and distance metrics with CIs,
lesion-level FROC, per-case CSV, overlays of the best and worst cases, the HTML report.

Every case is segmented as ``medsight segment`` would (sliding windows, back to the source
grid) and compared with its reference mask in millimetres on the source grid.
"""

from __future__ import annotations

import heapq
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medsight.data.loading import load_items
from medsight.data.registry import build_dataset, dataset_kind
from medsight.errors import MedsightError
from medsight.evaluation.froc import froc_from_scans, scan_hits
from medsight.evaluation.outputs import METRICS_FILE
from medsight.evaluation.run_report import write_report
from medsight.evaluation.segmentation import case_metrics, summarize, write_cases_csv
from medsight.inference.lesions import label_lesions
from medsight.inference.load import load_run
from medsight.inference.segment import segment_image
from medsight.io.image import spacing_of
from medsight.tasks import SEGMENTATION
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)
N_SHOWN = 3  # best and worst cases drawn in the report


def evaluate_segmentation(run: Path, split: str = "test", data: Path | None = None,
                          out_dir: Path | None = None, mirror: bool | None = None) -> dict:
    loaded = load_run(run)
    cfg = loaded.cfg.model_copy(deep=True)
    mirror = bool(cfg.segmentation.mirror_tta) if mirror is None else mirror  # None: the run's own
    if data is not None:
        cfg.data = cfg.data.model_copy(update={"dataset": dataset_kind(Path(data)), "path": Path(data)})
    dataset = build_dataset(cfg.data, cfg.train.seed, unsplit=split if data is not None else None)
    raw = dataset.split(split)
    if not raw:
        raise MedsightError(f"the {split} split is empty")
    names, lesion_cfg = loaded.class_names, cfg.segmentation.lesions
    rows, froc_scans, shown_best, shown_worst, skipped = [], [], [], [], []
    # one case in memory at a time: read, segment, measure, keep the numbers
    for n, item in enumerate(tqdm(raw, desc=f"evaluate {split}", unit="case", disable=None)):
        got, bad = load_items([item], policy=cfg.data.bad_files, progress=False,
                              require_deidentified=cfg.data.require_deidentified)
        skipped.extend(bad)
        if not got:
            continue
        item = got[0]
        if item.get("mask") is None:
            raise MedsightError(f"{item.get('id')}: no reference mask to evaluate against")
        seg = segment_image(loaded, item["image"], mirror)
        pred = seg.labels[0].numpy().astype(np.int64)
        ref = np.asarray(item["mask"][0]).round().astype(np.int64)
        row = {"case": str(item.get("id", n)), **case_metrics(pred, ref, spacing_of(item["image"]), names)}
        rows.append(row)
        # lesion level: components of the foreground probability against reference components
        foreground = 1.0 - seg.probabilities[0].numpy()
        lesions, lesion_map = label_lesions(foreground, item["image"].affine.numpy(),
                                            lesion_cfg.candidate_threshold, lesion_cfg.min_size,
                                            max_lesions=lesion_cfg.max_lesions, want_map=lesion_cfg.hit_rule == "iou")
        case = (lesions, ref > 0, lesion_map) if lesion_cfg.hit_rule == "iou" else (lesions, ref > 0)
        froc_scans.append(scan_hits(case, lesion_cfg.hit_rule, lesion_cfg.iou_threshold))
        shown = {"image": np.asarray(item["image"][0]), "ref": ref, "pred": pred,
                 "caption": f"{row['case']}: Dice {_mean_dice(row, names):.3f}",
                 "spacing": list(spacing_of(item["image"]))}
        if ref.any():  # an empty slice segmented empty is "perfect" but shows nothing
            _keep(shown_best, _mean_dice(row, names), n, shown)
            _keep(shown_worst, -_mean_dice(row, names), n, shown)
    if not rows:
        raise MedsightError(f"the {split} split is empty ({len(skipped)} files skipped)")
    summary = summarize(rows, names, cfg.evaluation.n_bootstrap, cfg.train.seed)
    lesion_result = froc_from_scans(froc_scans, lesion_cfg.hit_rule, lesion_cfg.iou_threshold)
    dice = {name: {"mean": s["dice"]["mean"], "ci": s["dice"]["ci"]} for name, s in summary["per_class"].items()}
    metrics = {"task": "segmentation", "split": split, "n": len(rows), "class_names": names,
               "data": str(data or cfg.data.path or cfg.data.dataset), "model": cfg.model.name,
               "dice": dice, "mean_dice": summary["mean_dice"], "summary": summary,
               "froc": lesion_result, "lesion_rule": lesion_cfg.model_dump(),
               "mirror_tta": mirror,
               "skipped_files": len(skipped) + len(dataset.skipped)}
    out = Path(out_dir) if out_dir is not None else Path(run)
    write_json(out / METRICS_FILE, metrics)
    write_cases_csv(out / f"cases_{split}.csv", rows, names)
    write_report(out, Path(run), SEGMENTATION, metrics, rows=rows,
                 best=[c for _, _, c in sorted(shown_best, reverse=True)],
                 worst=[c for _, _, c in sorted(shown_worst, reverse=True)])
    return metrics


def _mean_dice(row: dict, names: list[str]) -> float:
    values = [row[n]["dice"] for n in names[1:] if row.get(n, {}).get("dice") is not None]
    return float(np.mean(values)) if values else float("nan")


def _keep(heap: list, score: float, order: int, item: dict) -> None:
    """Keep the N_SHOWN items with the highest score (a min-heap; order breaks ties)."""
    if np.isnan(score):
        return
    entry = (score, -order, item)
    if len(heap) < N_SHOWN:
        heapq.heappush(heap, entry)
    elif entry[:2] > heap[0][:2]:
        heapq.heapreplace(heap, entry)

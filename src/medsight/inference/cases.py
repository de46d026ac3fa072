"""``medsight predict RUN --cases cases.csv``: whole cases, for runs that read more than one image.

A run trained on several images per case (``path``, ``path_t2``, ...) or on clinical columns
too cannot diagnose a lone image; each row of the cases CSV is one case, with the columns the
run was trained on (``plan.json``: ``image_columns`` and ``clinical``)::

    path,path_t2,age,sex
    case01_t1.nii.gz,case01_t2.nii.gz,63,F
    case02_t1.nii.gz,case02_t2.nii.gz,,M        <- age missing: imputed as in training

Relative paths are resolved beside the CSV; other columns (label, patient_id) are ignored, so a
training manifest works too. The case's images are read, stacked on the first one's grid and
preprocessed as in training, its clinical values encoded with the encoder fitted on the
training split. The output folder holds ``predictions.json`` (one record per case; ``input``
is the row's ``path``), ``heatmaps/`` (Grad-CAM of the image branch) and ``summary.json``.
Cases are read one at a time; a bad case is listed and the rest done.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from medsight.data.loading import load_items
from medsight.data.manifest import case_items
from medsight.errors import ConfigError, MedsightError
from medsight.inference.batch import PREDICTIONS_FILE, SUMMARY_FILE, BatchReport, summary
from medsight.inference.explain import METHODS
from medsight.inference.load import load_run
from medsight.inference.overlay import overlay_png
from medsight.inference.predict import predict_case
from medsight.utils.atomic import write_bytes, write_json
from medsight.utils.paths import safe_stem

log = logging.getLogger(__name__)


def predict_cases(run_dir: Path, cases_csv: Path, out_dir: Path, heatmaps: bool = True,
                  method: str = "gradcam", fail_fast: bool = False, tta: bool = False) -> BatchReport:
    """Predict every row of ``cases_csv`` into ``out_dir``; see the module docstring."""
    t0 = time.perf_counter()
    if heatmaps and method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose {', '.join(METHODS)}")
    run = load_run(run_dir)
    clinical = run.clinical.names if run.clinical is not None else []
    items = case_items(cases_csv, run.image_columns, clinical)
    out_dir = Path(out_dir)
    results: list[dict] = []
    failures: list[tuple[str, str]] = []
    for index, item in enumerate(tqdm(items, desc="predict", unit="case", disable=None)):
        try:
            [case], _ = load_items([item], progress=False, require_deidentified=run.cfg.data.require_deidentified)
            record, heat, x = predict_case(run, case["image"], heatmaps, method, tta, case.get("clinical"))
        except MedsightError as exc:
            if fail_fast:
                raise
            failures.append((str(getattr(exc, "path", item["id"])), getattr(exc, "problem", str(exc))))
            continue
        record = {"input": item["id"], "images": [item["image"], *item.get("extra_images", [])], **record,
                  "heatmap": None, "heatmap_method": None}
        if heat is not None:
            png = out_dir / "heatmaps" / f"{index:04d}_{safe_stem(Path(item['image']))}.png"
            caption = f"{record['label']} ({record['probabilities'][record['label']]:.2f})"
            write_bytes(png, overlay_png(x, heat, caption))
            record["heatmap"], record["heatmap_method"] = str(png), method
        results.append(record)
    write_json(out_dir / PREDICTIONS_FILE, results)
    report = BatchReport(results, failures, 0, time.perf_counter() - t0)
    write_json(out_dir / SUMMARY_FILE, summary(report, len(items)))
    return report


"""The ``medsight`` command: thin sub-commands that parse arguments and call the library.

Every sub-command maps a :class:`~medsight.errors.MedsightError` to one line on stderr and
exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from medsight.cli_audit import audit_app
from medsight.cli_cache import cache_app
from medsight.cli_common import state, user_errors
from medsight.cli_deid import register as register_deid
from medsight.cli_node import register as register_node
from medsight.cli_pacs import pacs_app
from medsight.cli_pretrain import register as register_pretrain
from medsight.cli_serve import register as register_serve
from medsight.errors import MedsightError

app = typer.Typer(
    help="Deep-learning medical image analysis: train, evaluate, diagnose, de-identify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output."),
) -> None:
    state["debug"] = debug
    _configure_logging(verbose)


def _configure_logging(verbose: bool) -> None:
    """medsight's own log lines always; the libraries' log lines and Python warnings (pydicom
    quoting a bad UID, nibabel on odd headers, MONAI deprecations) only with --verbose, so a bad
    file ends in one clear line instead of a page of library chatter.

    A program that set up logging itself (or pytest) keeps its own configuration.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "medsight_cli", False)]:
        root.removeHandler(handler)  # a second invocation in one process starts afresh
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.medsight_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        # A filter on the handler, not logger levels: libraries set their own levels on import.
        handler.addFilter(lambda record: record.name.partition(".")[0] == "medsight")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a "py.warnings" record


@app.command()
@user_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config file (optional with --data)."),
    data: Optional[Path] = typer.Option(None, "--data", help="A .npz, manifest CSV, class folders or MSD folder: "
                                        "train a planned default on it without a config."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Training time budget (planned runs: 10)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=0.01"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    folds: int = typer.Option(0, "--folds", min=0, help="Train K cross-validation models into OUT/fold0.. "
                              "and an ensemble of them in OUT."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Train on N local processes (DistributedDataParallel)."),
) -> None:
    """Train a model: from a config, or a planned default for a data set (--data).

    Example: medsight train --data breastmnist.npz --minutes 5 --out runs/breast
             medsight train configs/demo.yaml --set train.epochs=5 --out runs/try1
    On several machines: torchrun ... -m medsight.cli train CONFIG (see docs/distributed.md).
    """
    import os

    from medsight.config import load_config
    from medsight.evaluation.calibrate import fit_on_val
    from medsight.training.run import planned_overrides, train_folds, train_run

    if config is None and data is None:
        raise MedsightError("give a config file or --data PATH (see medsight train --help)")
    overrides = planned_overrides(data, minutes) + list(set_)
    cfg = load_config(config, overrides)  # a bad config fails here, before any process starts
    if folds:
        run_dir = train_folds(cfg, out, folds, resume=resume, calibrate=fit_on_val)
        typer.echo(f"ensemble of {folds} folds: {run_dir}")
        return
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from medsight.runtime.distributed import launch_local

        args = ["train", *([str(config)] if config else []), *[a for item in overrides for a in ("--set", item)]]
        args += ["--out", str(out)] if out is not None else []
        launch_local(nproc, args + (["--resume"] if resume else []))
        typer.echo(f"run folder: {out if out is not None else Path('runs') / cfg.name}")
        return
    run_dir = train_run(cfg, out, resume=resume, calibrate=fit_on_val)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"run folder: {run_dir}")


@app.command()
@user_errors
def evaluate(
    run: Path = typer.Argument(..., help="Run folder made by `medsight train`."),
    split: str = typer.Option("test", help="Split to evaluate: train, val or test."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluate on another data source (manifest CSV, folder or .npz) instead of the run's."),
    target_sensitivity: Optional[float] = typer.Option(None, help="Choose the decision threshold on the val split for this sensitivity (binary tasks)."),
    threshold: Optional[float] = typer.Option(None, help="Decision threshold for the positive class (default 0.5)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where metrics.json and report.html go (default: the run folder)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average over flips (and 2D rotations; segmentation: mirroring, which 2D runs plan anyway)."),
) -> None:
    """Measure a trained model: metrics with 95% CIs, calibration, referral curve, HTML report.

    Example: medsight evaluate runs/demo --split test --target-sensitivity 0.95
             medsight evaluate runs/demo --tta
    """
    from medsight.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run, split=split, data=data, target_sensitivity=target_sensitivity,
                           threshold=threshold, out_dir=out, tta=tta)
    typer.echo(_summary_line(metrics))


@app.command()
@user_errors
def predict(
    run: Path = typer.Argument(..., help="Run folder made by `medsight train`."),
    inputs: Optional[list[Path]] = typer.Argument(None, help="Images (DICOM, NIfTI, PNG/JPEG) or folders of them."),
    cases: Optional[Path] = typer.Option(None, "--cases", help="CSV of whole cases instead (one row each: "
                                         "path, path_<name>, clinical columns), for runs trained on them."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Output folder (a rerun resumes in it)."),
    no_heatmap: bool = typer.Option(False, "--no-heatmap", help="Skip the heatmaps."),
    explain: str = typer.Option("gradcam", help="Heatmap method: gradcam, gradcam++ or occlusion."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Processes reading images ahead (default: 2 for 64+ inputs)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average over flips (and 2D rotations)."),
    db: Optional[str] = typer.Option(None, "--db", help="Audit every prediction in this database: sqlite:///PATH, "
                                     "postgresql://... or 'default' (medsight.db in the user's data folder)."),
    allow_foreign: bool = typer.Option(False, "--allow-foreign", help="Predict inputs the input guard refuses "
                                       "(another dimensionality, colour to a grey model, another modality, far "
                                       "out of distribution); they are marked out_of_distribution."),
    similar: int = typer.Option(0, "--similar", min=0, help="Also list the K most similar cases of --index."),
    index: Optional[Path] = typer.Option(None, "--index", help="Index folder made by `medsight index` "
                                         "(default: RUN/index when one was built there)."),
) -> None:
    """Diagnose new images: label, calibrated probabilities, uncertainty and a heatmap each.

    Large folders stream through in batches; a rerun into the same --out skips finished inputs.
    Example: medsight predict runs/demo study1.dcm series_folder/ --out preds
             medsight predict runs/demo scans/ --tta --explain occlusion
             medsight predict runs/mr-fusion --cases cases.csv --out preds   (columns path,path_t2,age,sex)
             medsight predict runs/demo scans/ --db sqlite:///var/medsight/audit.db   (audit trail)
             medsight predict runs/demo scan.png --similar 5 --index idx   (see medsight index)
    """
    from medsight.inference.batch import PREDICTIONS_FILE, predict_paths
    from medsight.runtime.ensemble_folder import run_task
    from medsight.store import open_database
    from medsight.tasks import DETECTION, require_command

    if bool(inputs) == (cases is not None):
        raise MedsightError("give images to predict, or --cases CSV (not both)")
    kind = run_task(run)
    require_command(kind, "predict", run)
    if db is not None and (cases is not None or kind is DETECTION):
        raise MedsightError("--db audits classifier predictions of images; --cases and detection runs are not "
                            "audited yet")
    audit_db = open_database(db) if db is not None else None
    if kind is DETECTION:
        if cases is not None:
            raise MedsightError(f"{run}: a detection run reads image files; give them instead of --cases")
        from medsight.inference.detection import detect_paths

        report = detect_paths(run, inputs, out, fail_fast=state["debug"])
    elif cases is not None:
        from medsight.inference.cases import predict_cases

        report = predict_cases(run, cases, out, heatmaps=not no_heatmap, method=explain, fail_fast=state["debug"],
                               tta=tta)
    else:
        report = predict_paths(run, inputs, out, heatmaps=not no_heatmap, method=explain, workers=workers,
                               fail_fast=state["debug"], tta=tta, audit_db=audit_db, allow_foreign=allow_foreign,
                               similar=similar, index=index)
    if len(report.results) <= 20:
        for r in report.results:
            typer.echo(_result_line(r))
    else:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(summary_counts(report).items()))
        typer.echo(f"{len(report.results)} images: {labels}")
    done = len(report.results) - report.resumed
    timing = f", {1000 * report.seconds / done:.0f} ms per image" if done > 0 else ""
    timing += f" on {report.engine}" if report.engine else ""
    typer.echo(f"wrote {out / PREDICTIONS_FILE}" + (f" ({report.resumed} resumed)" if report.resumed else "") + timing)
    for source, problem in report.failures:
        typer.echo(f"medsight: error: {source}: {problem}", err=True)
    if report.failures:
        raise typer.Exit(2)


def _result_line(r: dict) -> str:
    """One input's prediction: its label (classification) or its boxes, best first (detection)."""
    if "boxes" in r:
        found = "".join(f"; {label} {score:.2f}" for label, score in list(zip(r["labels"], r["scores"]))[:3])
        return f"{r['input']}: {len(r['boxes'])} box(es){found}"
    review = ("  needs review" if r.get("needs_review") else "") + (
        "  out of distribution" if r.get("out_of_distribution") else "")
    return f"{r['input']}: {r['label']} ({r['probabilities'][r['label']]:.3f}){review}"


def summary_counts(report) -> dict[str, int]:
    """Inputs per predicted label (detection: per number of boxes found)."""
    from collections import Counter

    return dict(Counter(r["label"] if "label" in r else f"{len(r['boxes'])} box(es)" for r in report.results))


@app.command()
@user_errors
def ensemble(
    runs: list[Path] = typer.Argument(..., help="Two or more run folders of the same task and classes."),
    out: Path = typer.Option(..., "--out", help="Ensemble folder to write (ensemble.json)."),
) -> None:
    """Average several runs' probabilities; predict/evaluate/serve the folder like one run.

    Example: medsight ensemble runs/a runs/b runs/c --out runs/abc && medsight evaluate runs/abc
    """
    from medsight.runtime.ensemble_folder import write_ensemble

    typer.echo(f"ensemble: {write_ensemble(out, runs)}")


@app.command()
@user_errors
def calibrate(
    run: Path = typer.Argument(..., help="Classification run folder made by `medsight train`."),
    review_fraction: Optional[float] = typer.Option(
        None, "--review-fraction", min=0.001, max=0.999,
        help="Flag as 'needs review' the entropy the most uncertain val fraction exceeds (default: the config's, 0.1)."),
    ood_fraction: float = typer.Option(0.05, "--ood-fraction", min=0.001, max=0.5,
                                       help="The input guard flags as out of distribution the val share most "
                                            "unlike the training images."),
) -> None:
    """Fit temperature scaling and the review threshold on the val split (calibration.json),
    and the input guard's profile (input_profile.json: what the training images were and the
    out-of-distribution score's thresholds); for a segmentation run, choose its post-processing
    on val (postprocessing.json).

    Training does this by itself; use it for runs trained before, or for another review fraction.
    Example: medsight calibrate runs/demo --review-fraction 0.05 --ood-fraction 0.05
    """
    from medsight.evaluation.calibrate import calibrate_run
    from medsight.runtime.ensemble_folder import run_task
    from medsight.runtime.run_folder import RunFolder
    from medsight.tasks import SEGMENTATION

    if run_task(run) is SEGMENTATION:
        from medsight.evaluation.postprocessing import choose_postprocessing

        p = choose_postprocessing(run)
        typer.echo(f"largest component kept for: {', '.join(p['largest_component']) or 'no class'} "
                   f"(val Dice {p['val_dice']}, n = {p['n']})")
        typer.echo(f"wrote {run / 'postprocessing.json'}")
        return
    c = calibrate_run(run, review_fraction=review_fraction, ood_fraction=ood_fraction)
    typer.echo(f"temperature {c['temperature']:.3f}: val ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}, "
               f"NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f} (n = {c['n']}); "
               f"needs review above entropy {c['review_threshold']:.3f}")
    typer.echo(f"wrote {RunFolder(run).calibration}" + (", input_profile.json" if (run / "input_profile.json").is_file()
                                                        else ""))


@app.command()
@user_errors
def segment(
    run: Path = typer.Argument(..., help="Segmentation run folder made by `medsight train`."),
    inputs: list[Path] = typer.Argument(..., help="Images (DICOM file or series folder, NIfTI, PNG) or folders."),
    out: Path = typer.Option(Path("segmentations"), "--out", help="Output folder."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Mirror test-time augmentation (default: the run's)."),
) -> None:
    """Segment images: a mask each (NIfTI with the source's affine; DICOM SEG for DICOM), lesions.json.

    Example: medsight segment runs/hippocampus scan.nii.gz --out seg
    """
    from medsight.inference.segment import LESIONS_FILE, segment_paths

    results = segment_paths(run, inputs, out, mirror=tta)
    for r in results:
        typer.echo(f"{r['input']}: {r['lesions']} lesion(s); mask {r['mask']} ({r['seconds']:.1f} s)")
    typer.echo(f"wrote {out / LESIONS_FILE}")


@app.command()
@user_errors
def export(
    run: Path = typer.Argument(..., help="Run folder made by `medsight train`."),
    format_: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: faster, validated on the val split."),
) -> None:
    """Export the run's best model for fast inference; predict then uses it.

    Example: medsight export runs/demo --format onnx   (writes runs/demo/model.onnx)
    """
    import json

    from medsight.inference.export import export_run
    from medsight.runtime.run_folder import RunFolder

    path, choice = export_run(run, format_, quantize), RunFolder(run).engine
    typer.echo(f"wrote {path}")
    if choice.is_file():  # classification runs: engine_choice.py
        typer.echo(f"predict's engine on this CPU: {json.loads(choice.read_text())['engine']} (the fastest that changes "
                   f"no validation decision; {choice})")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Output folder; the run lands in OUT/run."),
    epochs: Optional[int] = typer.Option(None, help="Override the number of epochs."),
    task: str = typer.Option("classification", "--task", help="classification or segmentation."),
) -> None:
    """Train, evaluate and diagnose on the built-in synthetic chest-CT set (no download).

    Example: medsight demo --out demo-out          (nodule yes/no, Grad-CAM)
             medsight demo --task segmentation     (nodule masks, lesion tables, FROC)
    """
    from medsight.demo import run_demo
    from medsight.runtime.run_folder import RunFolder

    run_dir = run_demo(out, epochs=epochs, task=task)
    typer.echo(f"report: {RunFolder(run_dir).report}")


register_deid(app)
app.add_typer(pacs_app, name="pacs")
app.add_typer(cache_app, name="cache")
app.add_typer(audit_app, name="audit")
register_node(app)
register_serve(app)
register_pretrain(app)


def _summary_line(metrics: dict) -> str:
    from medsight.tasks import SEGMENTATION, task_named

    if task_named(metrics.get("task", "classification"), "metrics") is SEGMENTATION:
        parts = [f"Dice {name} {d['mean']:.3f} [{d['ci'][0]:.3f}, {d['ci'][1]:.3f}]"
                 for name, d in metrics["dice"].items() if d["mean"] is not None and d["ci"][0] is not None]
        score = (metrics.get("froc") or {}).get("score")
        return "; ".join(parts + ([f"FROC score {score:.3f}"] if score is not None else []))
    keys = ["auc", "accuracy", "sensitivity", "specificity", "f1", "map"]  # map: box detection
    parts = []
    for k in keys:
        if metrics.get(k) is not None:
            lo, hi = metrics.get("ci", {}).get(k, [None, None])
            ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
            parts.append(f"{k} {metrics[k]:.3f}{ci}")
    return "; ".join(parts)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

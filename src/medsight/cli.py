"""The ``medsight`` command: thin sub-commands that parse arguments and call the library.

Every sub-command maps a :class:`~medsight.errors.MedsightError` to one line on stderr and
exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

from medsight.errors import MedsightError

app = typer.Typer(
    help="Deep-learning medical image analysis: train, evaluate, diagnose, de-identify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}
F = TypeVar("F", bound=Callable)


def _user_errors(fn: F) -> F:
    """Report user errors as one line and exit 2; keep tracebacks for ``--debug``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedsightError as exc:
            if _state["debug"]:
                raise
            typer.echo(f"medsight: error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("medsight: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@_user_errors
def train(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=0.01"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a model.

    Example: medsight train configs/demo.yaml --set train.epochs=5 --out runs/try1
    """
    from medsight.config import load_config
    from medsight.training.run import train_run

    cfg = load_config(config, set_)
    run_dir = train_run(cfg, out, resume=resume)
    typer.echo(f"run folder: {run_dir}")


@app.command()
@_user_errors
def evaluate(
    run: Path = typer.Argument(..., help="Run folder made by `medsight train`."),
    split: str = typer.Option("test", help="Split to evaluate: train, val or test."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluate on another data source (manifest CSV, folder or .npz) instead of the run's."),
    target_sensitivity: Optional[float] = typer.Option(None, help="Choose the decision threshold on the val split for this sensitivity (binary tasks)."),
    threshold: Optional[float] = typer.Option(None, help="Decision threshold for the positive class (default 0.5)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where metrics.json and report.html go (default: the run folder)."),
) -> None:
    """Measure a trained model: metrics with 95% CIs, plots and an HTML report.

    Example: medsight evaluate runs/demo --split test --target-sensitivity 0.95
    """
    from medsight.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run, split=split, data=data, target_sensitivity=target_sensitivity,
                           threshold=threshold, out_dir=out)
    typer.echo(_summary_line(metrics))


@app.command()
@_user_errors
def predict(
    run: Path = typer.Argument(..., help="Run folder made by `medsight train`."),
    inputs: list[Path] = typer.Argument(..., help="Images (DICOM, NIfTI, PNG/JPEG) or folders of them."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Output folder."),
    no_heatmap: bool = typer.Option(False, "--no-heatmap", help="Skip the heatmaps."),
    explain: str = typer.Option("gradcam", help="Heatmap method: gradcam or gradcam++."),
) -> None:
    """Diagnose new images: label, class probabilities and a Grad-CAM heatmap each.

    Example: medsight predict runs/demo study1.dcm series_folder/ --out preds
    """
    from medsight.inference.predict import predict_paths

    results = predict_paths(run, inputs, out, heatmaps=not no_heatmap, method=explain)
    for r in results:
        typer.echo(f"{r['input']}: {r['label']} ({r['probabilities'][r['label']]:.3f})")
    typer.echo(f"wrote {out / 'predictions.json'}")


@app.command()
@_user_errors
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Output folder; the run lands in OUT/run."),
    epochs: Optional[int] = typer.Option(None, help="Override the number of epochs."),
) -> None:
    """Train, evaluate and diagnose on the built-in synthetic chest-CT set (no download).

    Example: medsight demo --out demo-out
    """
    from medsight.demo import run_demo

    run_dir = run_demo(out, epochs=epochs)
    typer.echo(f"report: {run_dir / 'report.html'}")


@app.command()
@_user_errors
def deid(
    inp: Path = typer.Argument(..., metavar="IN", help="DICOM file or folder."),
    out: Path = typer.Argument(..., metavar="OUT", help="Output file or folder (mirrors IN)."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="Secret key for pseudonyms and UIDs; same key, same result."),
    profile: str = typer.Option("basic", help="De-identification profile (PS3.15 Annex E)."),
    shift_dates: bool = typer.Option(False, "--shift-dates", help="Shift dates by a per-patient offset instead of removing them."),
    keep_dates: bool = typer.Option(False, "--keep-dates", help="Keep dates unchanged."),
    map_path: Optional[Path] = typer.Option(None, "--map", help="Write pseudonym -> original mapping here (identifying!)."),
) -> None:
    """De-identify DICOM files (PS3.15 Annex E Basic Profile) before data moves.

    Example: medsight deid incoming/ clean/ --key-file site.key --shift-dates
    """
    from medsight.privacy.deid import DeidOptions, deidentify_tree, load_key

    if keep_dates and shift_dates:
        raise MedsightError("choose one of --keep-dates and --shift-dates")
    dates = "keep" if keep_dates else "shift" if shift_dates else "remove"
    options = DeidOptions(key=load_key(key_file), profile=profile, dates=dates, map_path=map_path)
    report = deidentify_tree(inp, out, options)
    typer.echo(f"de-identified {report.n_ok} file(s), {report.n_failed} failed, "
               f"{len(report.review)} to review for burned-in text; report: {report.report_path}")
    for source, problem in report.failures:
        typer.echo(f"medsight: error: {source}: {problem}", err=True)
    if report.n_failed:
        raise typer.Exit(2)


def _summary_line(metrics: dict) -> str:
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

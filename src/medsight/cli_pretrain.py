"""``medsight pretrain``, ``embed`` and ``index``: an encoder from unlabelled images, feature
vectors per image, and a nearest-neighbour index of a labelled archive for similar cases."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsight.cli_common import user_errors


def pretrain(
    data: Path = typer.Option(..., "--data", help="Images, labels ignored: a folder (flat or per class), a manifest "
                              "CSV (path column; patient_id groups the val split) or a .npz."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Time budget (default: 10)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set pretrain.temperature=0.2"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Learn an encoder from unlabelled images (SimCLR: two augmented views of each image), or with
    --set pretrain.method=restore a whole U-Net for segmentation (it restores distorted images).

    The run folder is a training run's (plan.json says "task": "pretrain"); fine-tune from it with
    medsight train --data LABELLED --set model.pretrained=RUN, or embed/index with it.
    Example: medsight pretrain --data archive/ --minutes 30 --out runs/ssl
    """
    from medsight.config import load_config
    from medsight.training.run import planned_overrides, train_run

    cfg = load_config(None, planned_overrides(data, minutes) + ["task=pretrain", *set_])
    typer.echo(f"run folder: {train_run(cfg, out, resume=resume)}")


def embed(
    run: Path = typer.Argument(..., help="A classification or pretrain run folder."),
    inputs: list[Path] = typer.Argument(..., help="Images (DICOM file or series folder, NIfTI, PNG) or folders."),
    out: Path = typer.Option(Path("embeddings"), "--out", help="Output folder."),
) -> None:
    """One L2-normalised feature vector per image: OUT/embeddings.npy (N x D) and embeddings.csv.

    Example: medsight embed runs/ssl scans/ --out emb
    """
    from medsight.inference.embed import EMBEDDINGS_FILE, embed_paths

    vectors, _ = embed_paths(run, inputs, out)
    typer.echo(f"wrote {out / EMBEDDINGS_FILE} ({vectors.shape[0]} x {vectors.shape[1]})")


def index(
    run: Path = typer.Argument(..., help="A classification or pretrain run folder."),
    data: Path = typer.Argument(..., help="A labelled archive: class folders, manifest CSV or .npz."),
    out: Path = typer.Option(..., "--out", help="Index folder to write (RUN/index: predict and serve find it)."),
    case_column: Optional[str] = typer.Option(None, "--case-column", help="Manifest column of case keys "
                                              "(default: the file name); never a patient name or ID."),
) -> None:
    """Index a labelled archive for similar-case search (predict --similar K --index OUT).

    Example: medsight index runs/breast archive.csv --out idx && medsight predict runs/breast x.png --similar 5 --index idx
             medsight index runs/breast archive.csv --out runs/breast/index && medsight serve runs/breast
    """
    from medsight.inference.similar import build_index

    meta = build_index(run, data, out, case_column)
    skipped = f"; {len(meta['skipped'])} unreadable skipped" if meta["skipped"] else ""
    typer.echo(f"indexed {meta['count']} cases ({meta['dim']}-d){skipped}: {out}")


def register(app: typer.Typer) -> None:
    for command in (pretrain, embed, index):
        app.command(command.__name__)(user_errors(command))

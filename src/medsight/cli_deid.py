"""``medsight deid``: DICOM de-identification before data moves (the work is ``medsight.privacy``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsight.cli_common import user_errors
from medsight.errors import MedsightError


@user_errors
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
    earlier = f" ({report.n_already_done} done by an earlier run)" if report.n_already_done else ""
    typer.echo(f"de-identified {report.n_ok} file(s){earlier}, {report.n_failed} failed, "
               f"{len(report.review)} to review for burned-in text; report: {report.report_path}")
    for source, problem in report.failures:
        typer.echo(f"medsight: error: {source}: {problem}", err=True)
    if report.n_failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command()(deid)

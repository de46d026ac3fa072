"""``medsight pacs``: query, pull and run a model on studies over DICOMweb."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsight.cli_common import user_errors

pacs_app = typer.Typer(help="Exchange with a PACS over DICOMweb: query, pull, run a model and store results.",
                       no_args_is_help=True)
_URL = typer.Option(..., "--url", help="DICOMweb root, e.g. http://pacs:8042/dicom-web")
_USER = typer.Option(None, "--user", help="User name (HTTP basic auth).")
_PASSWORD = typer.Option(None, "--password", help="Password (prefer --password-file).")
_PASSWORD_FILE = typer.Option(None, "--password-file", help="File holding the password.")


def _pacs_client(url: str, user: Optional[str], password: Optional[str], password_file: Optional[Path]):
    from medsight.pacs import connect
    from medsight.service.settings import read_secret

    return connect(url, user, read_secret(password, password_file, "PACS password"))


@pacs_app.command("query")
@user_errors
def pacs_query(
    url: str = _URL, user: Optional[str] = _USER, password: Optional[str] = _PASSWORD,
    password_file: Optional[Path] = _PASSWORD_FILE,
    study: Optional[str] = typer.Option(None, "--study", help="Study Instance UID."),
    modality: Optional[str] = typer.Option(None, "--modality", help="e.g. CT"),
    date: Optional[str] = typer.Option(None, "--date", help="Study date or range, e.g. 20240101-20240131"),
    limit: int = typer.Option(50, help="At most this many studies."),
) -> None:
    """Search studies (QIDO-RS): one line per study, no patient names or IDs.

    Example: medsight pacs query --url http://pacs:8042/dicom-web --user me --password-file pw --modality CT
    """
    from medsight.pacs import find_studies

    client = _pacs_client(url, user, password, password_file)
    for s in find_studies(client, study, modality, date, limit):
        typer.echo(f"{s['StudyInstanceUID']}  {s['StudyDate'] or '-'}  {s['ModalitiesInStudy'] or '-'}  "
                   f"series={s['NumberOfStudyRelatedSeries'] or '?'} instances={s['NumberOfStudyRelatedInstances'] or '?'}  "
                   f"{s['StudyDescription'] or ''}".rstrip())


@pacs_app.command("pull")
@user_errors
def pacs_pull(
    study: str = typer.Argument(..., help="Study Instance UID."),
    out: Path = typer.Option(..., "--out", help="Folder; one sub-folder per series."),
    series: Optional[str] = typer.Option(None, "--series", help="Only this Series Instance UID."),
    url: str = _URL, user: Optional[str] = _USER, password: Optional[str] = _PASSWORD,
    password_file: Optional[Path] = _PASSWORD_FILE,
) -> None:
    """Retrieve a study's image series (or one series) as DICOM files (WADO-RS).

    Example: medsight pacs pull 1.2.3.4 --out study/ --url http://pacs:8042/dicom-web --user me --password-file pw
    """
    from medsight.pacs import pull_study

    pulled = pull_study(_pacs_client(url, user, password, password_file), study, out, series)
    for uid, paths in pulled.items():
        typer.echo(f"{out / uid}: {len(paths)} file(s)")


@pacs_app.command("run")
@user_errors
def pacs_run(
    run: Path = typer.Argument(..., help="Run folder made by `medsight train`."),
    study: str = typer.Argument(..., help="Study Instance UID."),
    series: Optional[str] = typer.Option(None, "--series", help="Only this Series Instance UID."),
    no_store: bool = typer.Option(False, "--no-store", help="Diagnose only; store nothing on the PACS."),
    out: Optional[Path] = typer.Option(None, "--out", help="Keep the pulled files here (default: a temporary folder)."),
    url: str = _URL, user: Optional[str] = _USER, password: Optional[str] = _PASSWORD,
    password_file: Optional[Path] = _PASSWORD_FILE,
) -> None:
    """Diagnose a study on the PACS and store the results under it (Comprehensive SR + heatmap SC).

    Example: medsight pacs run runs/demo 1.2.3.4 --url http://pacs:8042/dicom-web --user me --password-file pw
    """
    from medsight.inference.load import load_run
    from medsight.pacs.run import run_study
    from medsight.runtime.ensemble_folder import run_task
    from medsight.tasks import require_command

    require_command(run_task(run), "pacs run", run)  # before any connection: a wrong run is one clear line
    client = _pacs_client(url, user, password, password_file)
    loaded = load_run(run)
    for r in run_study(client, loaded, study, model_name=run.name, series_uid=series,
                       store_results=not no_store, work_dir=out):
        stored = ", ".join(s["sop_class"] for s in r["stored"]) or "nothing stored"
        typer.echo(f"series {r['series_uid']}: {r['label']} ({r['probabilities'][r['label']]:.3f}) "
                   f"over {r['n_images']} image(s); {stored}")

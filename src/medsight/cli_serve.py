"""``medsight serve``: the REST API and the web viewer (the service itself is ``medsight.service``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsight.cli_common import user_errors


@user_errors
def serve(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Run folders to serve (NAME=FOLDER to name one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Key clients send in the X-API-Key header."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File holding the key (production: not visible in ps)."),
    open_: bool = typer.Option(False, "--open", help="No API key (refused unless --host is loopback)."),
    max_upload_mb: float = typer.Option(64, help="Largest accepted request body, MiB (413 past it)."),
    workers: int = typer.Option(2, help="Inference threads."),
    queue: int = typer.Option(32, help="Requests allowed to wait for a worker before 503."),
    require_deidentified: bool = typer.Option(False, "--require-deidentified", help="Refuse DICOM without PatientIdentityRemoved=YES."),
    pacs_url: Optional[str] = typer.Option(None, "--pacs-url", help="DICOMweb root of the PACS for /v1/pacs/run."),
    pacs_user: Optional[str] = typer.Option(None, "--pacs-user", help="PACS user (HTTP basic auth)."),
    pacs_password_file: Optional[Path] = typer.Option(None, "--pacs-password-file", help="File holding the PACS password."),
    db: Optional[str] = typer.Option(None, "--db", help="The database (sqlite:///PATH, postgresql://... or "
                                     "'default'): every prediction is audited in it (the caller is the API key's "
                                     "id) and /v1/worklist lists the node's jobs from it."),
    show_patient: bool = typer.Option(False, "--show-patient", help="The worklist shows patient names and IDs "
                                      "(hidden by default; never logged)."),
    index: Optional[list[str]] = typer.Option(None, "--index", metavar="NAME=FOLDER", help="A model's similar-case "
                                              "index (medsight index) for ?similar=K; default: RUN/index if built."),
) -> None:
    """Serve models over HTTP: REST API (/v1/predict, /docs) and the web viewer (/viewer/).

    Example: medsight serve runs/demo --port 8000 --api-key-file /etc/medsight/key
             medsight serve breast=runs/breast --index breast=idx/breast   (POST /v1/predict?similar=5)
    """
    from medsight.service.server import serve as run_server
    from medsight.service.settings import MIB, PacsSettings, ServiceSettings, read_secret, resolve_api_key

    pacs = None
    if pacs_url:
        pacs = PacsSettings(pacs_url, pacs_user, read_secret(None, pacs_password_file, "PACS password"))
    settings = ServiceSettings(api_key=resolve_api_key(api_key, api_key_file), open_access=open_,
                               max_upload_bytes=int(max_upload_mb * MIB), workers=workers, queue_size=queue,
                               require_deidentified=require_deidentified, pacs=pacs,
                               audit_db=db, show_patient=show_patient)
    run_server(runs, host, port, settings, index or ())


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

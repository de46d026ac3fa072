"""``medsight audit``: export the audit trail of inferences, and check that it is intact."""

from __future__ import annotations

import csv
import json
import sys
from typing import Optional

import typer

from medsight.cli_common import user_errors
from medsight.errors import MedsightError

audit_app = typer.Typer(help="The audit trail: one hash-chained row per inference.", no_args_is_help=True)
DB_HELP = "Database URL: sqlite:///PATH or postgresql://USER@HOST/NAME (default: medsight.db in the user's data folder)."
FORMATS = ("csv", "jsonl")


def open_db(url: Optional[str]):
    """Open (and migrate) the database a ``--db`` option names (its URL is logged)."""
    from medsight.store import open_database

    return open_database(url)


@audit_app.command("export")
@user_errors
def export_command(
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    since: Optional[str] = typer.Option(None, "--since", help="Only inferences from this ISO time on (UTC "
                                        "unless it says otherwise), e.g. 2025-01-31 or 2025-01-31T09:00."),
    format_: str = typer.Option("jsonl", "--format", help="csv or jsonl (one object per inference)."),
) -> None:
    """Print one record per inference: time, caller, input_sha256, run, checkpoint_sha256, label, refused, ...

    Example: medsight audit export --db sqlite:///var/medsight.db --since 2025-01-01 --format csv > audit.csv
    """
    from medsight.store.audit import FIELDS, JSON_FIELDS, export_rows, parse_since

    if format_ not in FORMATS:
        raise MedsightError(f"--format {format_!r}: choose {' or '.join(FORMATS)}")
    start = parse_since(since) if since is not None else None
    rows = export_rows(open_db(db), start)
    if format_ == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, sort_keys=False) + "\n")
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, sort_keys=True) if k in JSON_FIELDS and v is not None else v
                         for k, v in row.items()})


@audit_app.command("verify")
@user_errors
def verify_command(db: Optional[str] = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Check the hash chain: exit 0 if intact, 2 with one line naming the first edited or deleted row.

    Example: medsight audit verify --db postgresql://medsight@dbhost/medsight
    """
    from medsight.store.audit import verify

    verdict = verify(open_db(db))
    if not verdict.intact:
        raise MedsightError(f"audit trail broken at {verdict.problem}")
    typer.echo(f"audit trail intact: {verdict.rows} row(s)")

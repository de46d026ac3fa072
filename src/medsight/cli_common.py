"""What every ``medsight`` sub-command shares: user errors as one line, and ``--debug``."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer

from medsight.errors import MedsightError

state = {"debug": False}
F = TypeVar("F", bound=Callable)


def user_errors(fn: F) -> F:
    """Report user errors as one line and exit 2; keep tracebacks for ``--debug``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedsightError as exc:
            if state["debug"]:
                raise
            typer.echo(f"medsight: error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("medsight: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]

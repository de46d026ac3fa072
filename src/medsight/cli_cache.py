"""``medsight cache``: what the preprocessing cache holds, and clearing it."""

from __future__ import annotations

from pathlib import Path

import typer

from medsight.cli_common import user_errors

cache_app = typer.Typer(help="The on-disk cache of preprocessed cases (data.cache_dir).", no_args_is_help=True)
_WHERE = typer.Argument(Path("."), help="A cache folder, a run folder, or a folder holding .medsight-cache.")


def cache_root(where: Path) -> Path:
    """The cache a path names: itself, a run's ``data.cache_dir``, or ``WHERE/.medsight-cache``."""
    from medsight.data.cache import CACHE_DIRNAME
    from medsight.runtime.run_folder import CONFIG_FILE, read_config

    if (where / CONFIG_FILE).is_file():
        cfg = read_config(where)
        return Path(cfg.data.cache_dir) if cfg.data.cache_dir else where.resolve().parent / CACHE_DIRNAME
    if where.name != CACHE_DIRNAME and (where / CACHE_DIRNAME).is_dir():
        return where / CACHE_DIRNAME
    return where


@cache_app.command("info")
@user_errors
def cache_info_command(where: Path = _WHERE) -> None:
    """One line per preprocessing setting: cases, size on disk, task and data set.

    Example: medsight cache info runs/
    """
    from medsight.data.cache import cache_info

    root = cache_root(where)
    rows = cache_info(root)
    if not rows:
        typer.echo(f"{root}: no cache")
        return
    for r in rows:
        typer.echo(f"{r['folder']}  {r['cases']} cases  {r['mb']} MB  {r['task']}  {r['data']}")
    typer.echo(f"total {sum(r['mb'] for r in rows):.1f} MB in {root}")


@cache_app.command("clear")
@user_errors
def cache_clear_command(where: Path = _WHERE) -> None:
    """Delete the cache (it is rebuilt when next needed).

    Example: medsight cache clear runs/.medsight-cache
    """
    from medsight.data.cache import clear_cache

    root = cache_root(where)
    freed = clear_cache(root)
    typer.echo(f"{root}: {freed / 2**20:.1f} MB freed")

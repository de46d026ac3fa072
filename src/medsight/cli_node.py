"""``medsight listen`` and ``medsight work``: the DICOM node (C-STORE in, results out by C-STORE)."""

from __future__ import annotations

from pathlib import Path

import typer

from medsight.cli_common import user_errors

_CONFIG = typer.Option(..., "--config", help="The node's YAML config (see README, 'DICOM node').")


def _node(config: Path, listen: bool, workers: int | None):
    from medsight.node import load_node_config
    from medsight.node.serve import Node

    cfg = load_node_config(config)
    return Node(cfg, listen=listen, workers=workers).start()


@user_errors
def listen_command(config: Path = _CONFIG) -> None:
    """Receive series by C-STORE, queue a job per routed series, run them and send the results.

    Example: medsight listen --config node.yaml   (Ctrl-C stops it)
    """
    _node(config, listen=True, workers=None).wait()


@user_errors
def work_command(
    config: Path = _CONFIG,
    workers: int = typer.Option(None, "--workers", help="Worker threads (default: the config's workers, at least 1)."),
) -> None:
    """Run only workers against the node's database (another machine sharing its storage_dir).

    Example: medsight work --config node.yaml --workers 2
    """
    from medsight.node import load_node_config

    count = workers if workers is not None else max(1, load_node_config(config).workers)
    _node(config, listen=False, workers=count).wait()


def register(app: typer.Typer) -> None:
    app.command("listen")(listen_command)
    app.command("work")(work_command)

"""Workflow commands: ``preflight`` (the checks pipelines/Snakefile runs before any job)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def preflight(
    configfiles: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Workflow config files, read in order on top of pipelines/config.yaml (like "
                       "snakemake --configfile).", show_default=False),
    ] = None,
    config: Annotated[
        Optional[list[str]], typer.Option("--config", "-C", help="KEY=VALUE (YAML value) on top, like snakemake "
                                          "--config; repeatable.")
    ] = None,
    slurm: Annotated[bool, typer.Option("--slurm", help="Also check every job against this SLURM cluster's "
                                        "partitions and nodes (scontrol).")] = False,
) -> None:
    """The cohort workflow's checks before a run (pipelines/Snakefile does them itself): cohort
    files, labels, folds vs groups, encoder weights, tumour-bed settings and, with --slurm, that
    each job's partition, GPUs, CPUs, memory and wall time fit a node."""
    from weakstil.pipeline_preflight import default_config_file, load_workflow_config, run_preflight

    files = [p for p in [default_config_file()] if p is not None] + list(configfiles or [])
    typer.echo(run_preflight(load_workflow_config(files, list(config or [])), slurm=slurm))

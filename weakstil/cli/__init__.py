"""The ``weakstil`` command line.

* :mod:`~weakstil.cli.options` — every option, defined once (defaults from :mod:`weakstil.settings`);
* :mod:`~weakstil.cli.errors` — one error line per problem, exit codes;
* :mod:`~weakstil.cli.progress` — logging, progress bars;
* one module per group of commands: :mod:`~weakstil.cli.slides` (tile, info, synth),
  :mod:`~weakstil.cli.cohort` (train, evaluate, report), :mod:`~weakstil.cli.stage1` (encoders,
  embed, pretrain), :mod:`~weakstil.cli.score` (score, demo), :mod:`~weakstil.cli.tumorbed`,
  :mod:`~weakstil.cli.workflow` (preflight).

Commands only parse options and call the library. Heavy libraries are imported inside the
commands: ``weakstil --help`` must answer in about a second.

Exit codes: 0 all inputs succeeded; 1 at least one input failed (the others were still
processed); 2 usage error.
"""

from __future__ import annotations

from typing import Annotated

import typer

from weakstil import __version__
from weakstil.cli import cohort, score, slides, stage1, tumorbed, workflow
from weakstil.cli.errors import error_line, reports_errors
from weakstil.cli.options import expand_slides

app = typer.Typer(
    name="weakstil",
    help="Stromal TIL scoring (sTIL%) of H&E whole-slide images with weakly supervised MIL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"weakstil {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from weakstil.cli.progress import setup_logging

    setup_logging(verbose)


for _command in (slides.tile, slides.info, slides.synth, cohort.train, cohort.evaluate, cohort.report,
                 stage1.encoders, stage1.embed, stage1.pretrain, score.score, score.demo, workflow.preflight):
    app.command()(reports_errors(_command))

tumorbed_app = typer.Typer(help=tumorbed.HELP, no_args_is_help=True)
tumorbed_app.command("train")(reports_errors(tumorbed.tumorbed_train))
tumorbed_app.command("apply")(reports_errors(tumorbed.tumorbed_apply))
app.add_typer(tumorbed_app, name="tumorbed")


def main() -> None:
    app()


__all__ = ["app", "error_line", "expand_slides", "main"]

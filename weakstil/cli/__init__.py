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

import logging
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from weakstil.code_version import version as code_version
from weakstil.cli import cohort, score, slides, stage1, tumorbed, workflow
from weakstil.cli.errors import error_line, reports_errors
from weakstil.cli.options import LogLevelOpt, QuietOpt, VerboseOpt, expand_slides


#: click's exception base (typer >= 0.29 vendors click as typer._click; earlier typers use click itself).
_CLICK_ERRORS: tuple[type[Exception], ...] = tuple(
    {cls for cls in (getattr(typer, "TyperException", None), getattr(sys.modules.get("click"), "ClickException", None))
     if isinstance(cls, type)})


def _dash_file(exc: Exception, argv: Sequence[str]) -> str | None:
    """The argument behind an unknown option when it is an existing file (``-dash.tiff`` read as ``-d``)."""
    name = getattr(exc, "option_name", None)
    if type(exc).__name__ != "NoSuchOption" or not isinstance(name, str) or not name.startswith("-"):
        return None
    return next((a for a in argv if a.startswith(name) and os.path.lexists(a)), None)


#: Tiling options of tile, embed and pretrain: the commands that read slides with a model or
#: features take the tiling those were made with, and click's nearest names mean something else
#: (--slide-mpp the scan's own resolution, --threshold the sTIL-high call, --batch-size).
_TILING_OPTIONS = ("--mpp", "--tile-size", "--overlap", "--tissue-threshold")


def _tiling_option(exc: Exception, where: str) -> str | None:
    """The line for a tiling option given to a command that has none (``score --mpp 1``)."""
    name = getattr(exc, "option_name", None)
    if type(exc).__name__ != "NoSuchOption" or name not in _TILING_OPTIONS:
        return None
    ctx = getattr(exc, "ctx", None)
    if ctx is None or ctx.command.name not in ("score", "evaluate", "report", "train", "apply"):
        return None  # synth, info...: click's own line
    has = {o for p in ctx.command.params for o in getattr(p, "opts", ())}
    slide_mpp = "; --slide-mpp only states a scan's own µm/px (a file without one)" if "--slide-mpp" in has else ""
    if "--model" in has:
        return (f"no such option: {name} ({where} reads slides at its model's tiling: model.json 'tiling', the µm/px, "
                f"tile size, overlap and tissue threshold it was trained at). Fix: for another tiling, embed and "
                f"train at it ('weakstil embed {name} ...'){slide_mpp}.")
    return (f"no such option: {name} ({where} takes the tiling of its feature files). Fix: embed at the tiling "
            f"wanted ('weakstil embed {name} ...') and pass those features.")


#: The options of ``weakstil`` itself, which go before the command: ``weakstil score ... -v`` was
#: "no such option: -v" (``--verbose``: "Possible options: --overwrite"), with no word of where it goes.
_GROUP_OPTIONS = ("-v", "--verbose", "-q", "--quiet", "--log-level", "--version")


def _no_such_option(exc: Exception, where: str) -> str | None:
    """The line for an unknown option: a group option given after the command says where it goes;
    else the command's options nearest to it by name. click compares names with their dashes, so
    every long option shared ``--`` with it: ``--bogus`` was offered ``--out``, ``--verbose``
    ``--overwrite``, ``--modle`` ``--decode, --encoder, --model``."""
    import difflib

    name, ctx = getattr(exc, "option_name", None), getattr(exc, "ctx", None)
    if type(exc).__name__ != "NoSuchOption" or not isinstance(name, str) or ctx is None:
        return None
    if ctx.parent is not None and name in _GROUP_OPTIONS:
        root = ctx.find_root().command_path
        rest = ctx.command_path[len(root):].strip()
        fix = f"'{root} --version'" if name == "--version" else f"'{root} {name} {rest} ...'"
        return f"no such option: {name} ({name} is an option of '{root}' itself, before the command). Fix: {fix}."
    longs = sorted({o[2:] for p in ctx.command.get_params(ctx)
                    for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())) if o.startswith("--")})
    near = difflib.get_close_matches(name.lstrip("-").lower(), longs, n=3) if name.startswith("--") else []
    named = [f"--{n}" for n in near]
    hint = f" (did you mean {', '.join(named[:-1]) + ' or ' if len(named) > 1 else ''}{named[-1]}?)" if near else ""
    return f"no such option: {name}{hint}. Fix: see '{where} --help'."


def usage_error_line(exc: Exception, argv: Sequence[str] = ()) -> str:
    """A command-line mistake (bad value, unknown option, missing argument) as one line; ``argv``
    (the command line) lets an unknown option that is really a file named ``-...`` say so."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "weakstil"
    message = (exc.format_message() if hasattr(exc, "format_message") else str(exc)).strip().rstrip(".")
    message = message[0].lower() + message[1:] if message[:1].isupper() and message[1:2].islower() else message
    dash_file = _dash_file(exc, argv)
    if (tiling := _tiling_option(exc, where)) is not None:
        return tiling
    if dash_file is not None:
        return (f"{message} ({dash_file} is a file whose name starts with '-'). Fix: put -- before the file names "
                f"(options go before it: '{where} -- {dash_file}'), or write it as ./{dash_file}.")
    if (unknown := _no_such_option(exc, where)) is not None:
        return unknown
    if message.startswith("invalid value for ") and ": Value error, " in message:  # pydantic's prefix (typer 0.29)
        message = message.replace(": Value error, ", ": ", 1)
    if (number := _not_a_number(exc, argv, message)) is not None:
        return f"{number} Fix: see '{where} --help'."
    if " Fix: " in message:  # the check named its own fix
        return f"{message}."
    return f"{message}{'' if message.endswith('?') else '.'} Fix: see '{where} --help'."


#: pydantic's words for a value that is no number (typer 0.29), and what the option wants instead.
_NOT_NUMBER = {"Input should be a valid integer": "a whole number", "Input should be a valid number": "a number"}


def _not_a_number(exc: Exception, argv: Sequence[str], message: str) -> str | None:
    """``--folds x`` said "Input should be a valid integer, unable to parse string as an integer",
    naming neither the value given nor what to give: the line names both (session 64 review)."""
    wanted = next((w for words, w in _NOT_NUMBER.items() if words in message), None)
    opts = tuple(getattr(getattr(exc, "param", None), "opts", ()) or ())
    if wanted is None or not opts:
        return None
    given = None
    for i, arg in enumerate(argv):
        if arg in opts and i + 1 < len(argv):
            given = argv[i + 1]
        elif "=" in arg and arg.split("=", 1)[0] in opts:
            given = arg.split("=", 1)[1]
    said = f"{given!r} is not {wanted}" if given is not None else f"not {wanted}"
    return f"invalid value for '{max(opts, key=len)}': {said}."


def _flags_show_no_value(command: Any, ctx: Any) -> None:
    """typer's help shows a flag's type (``<bool>``) as if the flag took a value: show none."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


#: What a folder given as an argument is (a file it holds), and the option that takes it.
_FOLDER_OPTIONS = (("model.json", "--model", "a model folder"), ("results.csv", "--scores", "a 'weakstil score' folder"),
                   ("metrics.json", "--evaluation", "a 'weakstil evaluate' folder"))


def _extra_argument_line(extra: list[str], has: set[str], where: str) -> str:
    """The line for arguments a command does not take; a folder that an option of the command
    takes (``weakstil report MODEL``: a model given without --model) names that option."""
    shown = " ".join(extra)
    for arg in extra:
        for marker, option, what in _FOLDER_OPTIONS:
            if option in has and os.path.isfile(os.path.join(arg, marker)):
                return (f"got unexpected extra argument(s) ({shown}): {arg} is {what}, which {where} takes with "
                        f"{option}. Fix: '{where} {option} {arg} ...' (see '{where} --help').")
    return f"got unexpected extra argument(s) ({shown}). Fix: see '{where} --help'."


#: The narrowest help column of typer's rich help table that cuts no name or word short.
_HELP_COLUMN_MIN = 30


def rich_help_fits(command: Any, ctx: Any) -> bool:
    """Whether typer's rich help fits the terminal. Its table gives option names, their --no- forms and
    value types columns of their own, and rich shrinks every column to the width: at 80 columns train's
    help column was 16 characters, and six option names and words were cut ('--centre-embed…',
    '--tissue-thres…', '<slide_id>_tumo…'), embed's three."""
    from rich.console import Console
    from typer import rich_utils

    width = Console(width=rich_utils.MAX_WIDTH).width
    for kind in ("option", "argument"):  # one panel, one table each
        rows = []
        for p in (p for p in command.get_params(ctx) if p.param_type_name == kind and not getattr(p, "hidden", 0)):
            first, second = list(p.opts), list(getattr(p, "secondary_opts", ()))
            shown = p.display_type_rich(ctx) if hasattr(p, "display_type_rich") else None
            rows.append((",".join(o for o in first if "--" in o), ",".join(o for o in first if "--" not in o),
                         ",".join(o for o in second if "--" in o), ",".join(o for o in second if "--" not in o),
                         shown or "", "*" if p.required else ""))
        used = sum(max(len(r[i]) for r in rows) + 2 for i in range(6) if any(r[i] for r in rows)) if rows else 0
        if rows and width - 4 - used < _HELP_COLUMN_MIN:  # 4: the panel's border and padding
            return False
    return True


class FlagHelpCommand(TyperCommand):
    """A command whose help shows on/off flags without a value, in click's plain layout (each help
    under its option when the name is long) where typer's table would not fit the terminal."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_show_no_value(self, ctx)
        if rich_help_fits(self, ctx):
            super().format_help(ctx, formatter)
            return
        from typer import core

        ctx.ensure_object(dict)  # as typer's own plain branch: its options read the markup mode there
        if isinstance(ctx.obj, dict):
            ctx.obj[getattr(core, "MARKUP_MODE_KEY", "TYPER_RICH_MARKUP_MODE")] = None
        super(TyperCommand, self).format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Arguments the command does not take are said before a missing option: ``weakstil report
        MODEL`` said "missing option --out" (then, given --out, "unexpected extra argument"), not
        that the model folder goes with --model."""
        if not ctx.resilient_parsing and not set(args) & set(ctx.help_option_names):
            try:
                opts, extra, _ = self.make_parser(ctx).parse_args(args=list(args))
            except _CLICK_ERRORS:  # an unknown option, a value missing: click's own line below
                opts, extra = {}, []
            usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
            if extra and not ctx.allow_extra_args:
                has = {o for p in self.params for o in getattr(p, "opts", ())}
                raise usage_error(_extra_argument_line(extra, has, ctx.command_path), ctx=ctx)
            if (empty := _empty_path(self.params, opts)) is not None:
                raise usage_error(empty, ctx=ctx)
        try:
            return super().parse_args(ctx, args)
        except _CLICK_ERRORS as exc:
            # click raises "option '--out' requires an argument" without its command: the line
            # pointed at 'weakstil --help', whose help has no --out
            if hasattr(exc, "ctx") and exc.ctx is None:
                exc.ctx = ctx
            raise


def _empty_path(params: list, opts: dict) -> str | None:
    """The line for a path given as an empty string (``--out "$OUT"`` with ``OUT`` unset): read as
    ``.``, it wrote results.csv, heatmaps and caches into the current folder (exit 0), took the
    current folder as ``--features`` or ``--annotations`` (hunt 27a). Every argument is a path, and so is
    ``--weights`` (a file or 'random': empty, it was '.: is a directory, not a weights file', exit 1)."""
    for param in params:
        values = opts.get(param.name)
        values = values if isinstance(values, (list, tuple)) else [values]
        is_path = param.param_type_name == "argument" or "Path" in str(getattr(param, "bare_type", str)()) or \
            param.name == "weights"
        if is_path and any(isinstance(v, str) and not v.strip() for v in values):
            name = param.opts[0] if param.param_type_name == "option" else param.name.upper()
            return (f"{name} is empty (an unset shell variable?), which would be read as the current folder. "
                    f"Fix: give the path")
    return None


class FlagHelpGroup(TyperGroup):
    """A group of commands whose help shows on/off flags without a value."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_show_no_value(self, ctx)
        super().format_help(ctx, formatter)


class OneLineErrors(FlagHelpGroup):
    """The ``weakstil`` group: usage errors are one ``error:`` line (exit 2), like every other error,
    instead of click's usage box."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            error_line("aborted.")
            sys.exit(1)
        except _CLICK_ERRORS as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'weakstil tumorbed': its help
                exc.show()  # type: ignore[attr-defined]
            else:
                error_line(usage_error_line(exc, sys.argv[1:] if args is None else list(args)))
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="weakstil",
    help="Stromal TIL scoring (sTIL%) of H&E whole-slide images with weakly supervised MIL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version_line() -> str:
    """``weakstil --version``: WeakSTIL's version and those a bug report needs (it said only
    ``weakstil 0.1.0``); read from the installed packages' metadata, nothing imported."""
    from weakstil.runtime import installed_versions

    found = installed_versions(("torch", "openslide-python", "openslide-bin", "timm"))
    python = found.pop("python")
    return f"weakstil {code_version()} (Python {python}; " + ", ".join(f"{k} {v}" for k, v in found.items()) + ")"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _main(
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_level: LogLevelOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from weakstil.cli.progress import setup_logging
    from weakstil.runtime import drop_bad_thread_env, quiet_matplotlib_home

    given = [name for name, on in (("-v", verbose), ("-q", quiet), (f"--log-level {getattr(log_level, 'value', '')}",
                                                                     log_level is not None)) if on]
    if len(given) > 1:  # which one wins would be a guess
        raise typer.BadParameter(f"{' and '.join(given)} ask for different logging; give one of them",
                                 param_hint="'--log-level'")
    setup_logging(verbose, None if log_level is None and not quiet else
                  logging.WARNING if log_level is None else getattr(logging, log_level.value.upper()))
    quiet_matplotlib_home()
    drop_bad_thread_env()


def _help(command: Any) -> str:
    """The command's docstring with each paragraph on one line: typer's rich help keeps a docstring's
    line breaks, so `weakstil --help` listed `score` as "tile-score heatmaps, HDF5 and" with the rest on
    the next line, and `train --help` broke its paragraphs mid-sentence; rich wraps one-line paragraphs
    to the terminal."""
    import inspect

    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


for _command in (slides.tile, slides.info, slides.synth, cohort.train, cohort.evaluate, cohort.report,
                 stage1.encoders, stage1.embed, stage1.pretrain, score.score, score.demo, workflow.preflight):
    app.command(cls=FlagHelpCommand, help=_help(_command))(reports_errors(_command))

tumorbed_app = typer.Typer(cls=FlagHelpGroup, help=tumorbed.HELP, no_args_is_help=True)
tumorbed_app.command("train", cls=FlagHelpCommand, help=_help(tumorbed.tumorbed_train))(
    reports_errors(tumorbed.tumorbed_train))
tumorbed_app.command("apply", cls=FlagHelpCommand, help=_help(tumorbed.tumorbed_apply))(
    reports_errors(tumorbed.tumorbed_apply))
app.add_typer(tumorbed_app, name="tumorbed")


def main() -> None:
    app()


__all__ = ["app", "error_line", "expand_slides", "main"]

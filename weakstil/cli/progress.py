"""Logging and progress bars of the commands (rich), and SIGTERM handling."""

from __future__ import annotations

import logging

#: Third-party loggers kept at WARNING.
QUIET_LOGGERS = ("PIL", "matplotlib", "h5py", "urllib3", "timm", "huggingface_hub")


def setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], format="%(message)s",
                        force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _log_console():
    """The log handler's console, so log lines print above live bars."""
    from rich.console import Console
    from rich.logging import RichHandler

    return next((h.console for h in logging.getLogger().handlers if isinstance(h, RichHandler)), None) or \
        Console(stderr=True)


def epoch_progress():
    """A rich progress display and an ``on_epoch`` callback feeding it (one bar per fold)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=_log_console(),
                        transient=False)
    tasks: dict[str, int] = {}

    def on_epoch(stage: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float, done: bool) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=max_epochs, info="")
        info = "" if train_loss != train_loss else \
            f"loss {train_loss:.4f}" + ("" if val_loss != val_loss else f"  val {val_loss:.4f}")
        progress.update(tasks[stage], completed=max_epochs if done else epoch, info=info)

    return progress, on_epoch


def bar_progress(unit: str):
    """A rich progress display on the log console, for loops with a known total."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=_log_console(), transient=True)


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so temporary outputs are cleaned up on the way out."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from tests in a thread)
        pass

"""How preparation's tasks run: on forked worker processes, under a progress bar."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator


def pool_map(function, tasks: list, workers: int) -> Iterator:
    """function(task) for every task, in the order they finish."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_stopped_by_sigterm) as pool:
        yield from pool.imap_unordered(function, tasks)


def _stopped_by_sigterm() -> None:
    """The pool's exit stops idle workers with SIGTERM. A worker forked from a process with a SIGTERM handler that
    does not exit (Lightning's, left installed when a run fails in its logger's teardown) would live on, and the
    pool's exit would wait for it for ever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def progress(enabled: bool, description: str, total: int):
    """Yields advance(n): a rich progress bar, or nothing."""
    if not enabled or total == 0:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)

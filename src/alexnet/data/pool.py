"""How preparation's tasks run: on forked worker processes, under a progress bar."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator


def pool_map(function, tasks: list, workers: int) -> Iterator:
    """function(task) for every task, in the order they finish."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(function, tasks)


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

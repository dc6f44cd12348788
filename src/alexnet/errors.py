"""Errors a user can fix, and how the entry points show them: what is wrong, the key or file, and what to do,
in a few lines and a non-zero exit, not a traceback (HYDRA_FULL_ERROR=1 shows the traceback as well)."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
from pathlib import Path


class UserError(Exception):
    """Bad input (a config value, a dataset layout, a store, a checkpoint, a full disk): the message says
    what is wrong, names the key or file, and says what to do."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """Config values out of range; the message lists every one."""

    exit_code = 2


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or contradicts the settings given with it."""


class DiskFullError(UserError, OSError):
    """No space left while writing a file; the previous version of the file, if any, is intact."""


def disk_full(error: OSError) -> bool:
    """Whether a failed write failed for want of space (a full disk, or the user's quota)."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def report(error: BaseException) -> int:
    """Print a user error as train.py, eval.py and prepare.py show it; returns the exit code."""
    print(f"error: {error}", file=sys.stderr)
    print("(set HYDRA_FULL_ERROR=1 to see the traceback)", file=sys.stderr)
    return getattr(error, "exit_code", 1)


def user_errors_reported(main):
    """Wraps an entry point's task function (inside @hydra.main): a UserError, or a non-finite loss, exits with
    its message alone; the run folder that Hydra made for this run is removed if nothing but Hydra wrote to it, so
    that a mistaken command (a missing data.root, a class count that disagrees) leaves no folder behind."""

    @functools.wraps(main)
    def wrapped(cfg, *args, **kwargs):
        new_folder = _new_run_folder()
        try:
            return main(cfg, *args, **kwargs)
        except (UserError, FloatingPointError) as error:
            if new_folder is not None:
                _remove_if_unused(*new_folder, log_dir=cfg.paths.log_dir)
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            sys.exit(report(error))

    return wrapped


def _new_run_folder() -> tuple[Path, set[str]] | None:
    """(the run folder, the names Hydra writes in it) if Hydra has only just made the folder for this run:
    nothing in it but Hydra's subfolder and an empty log. A folder that a previous run left anything in (its
    log, checkpoints) is never removed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is None:
        return None  # prepare.py, summary.py: no run folder, they run in the working directory
    hydra = HydraConfig.get()
    folder = Path(hydra.runtime.output_dir)
    log = folder / f"{hydra.job.name}.log"
    from alexnet.rundir import LOCK  # here: alexnet.rundir raises this module's errors

    hydra_names = {hydra.output_subdir, log.name, LOCK}  # the lock: taken by the run that failed
    if _holds_only(folder, hydra_names) and (not log.exists() or log.stat().st_size == 0):
        return folder, hydra_names
    return None


def _holds_only(folder: Path, names: set[str]) -> bool:
    """Nothing in folder but these names, and only files in its subfolders (Hydra's config.yaml, ...)."""
    if not folder.is_dir():  # another process of the run (DDP) has removed it
        return False
    entries = list(folder.iterdir())
    return {p.name for p in entries} <= names and all(f.is_file() for p in entries if p.is_dir() for f in p.iterdir())


def _remove_if_unused(folder: Path, hydra_names: set[str], log_dir: str) -> None:
    """Removes a new run folder that still holds only Hydra's files (this run's log among them), then the
    folders between it and paths.log_dir that it leaves empty (logs/full/ of logs/full/baseline/)."""
    if not _holds_only(folder, hydra_names):
        return
    shutil.rmtree(folder, ignore_errors=True)
    top = Path(os.path.abspath(log_dir))
    for parent in folder.parents:
        if top not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:  # not empty: another run's
            break

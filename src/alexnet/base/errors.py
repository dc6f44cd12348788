"""Errors a user can fix, and how the entry points show them: what is wrong, the key or file, and what to do,
in a few lines and a non-zero exit, not a traceback (HYDRA_FULL_ERROR=1 shows the traceback as well)."""

from __future__ import annotations

import errno
import sys


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

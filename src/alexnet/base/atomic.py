"""Atomic writes: a reader (or a rerun after a kill) sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

TEMPORARY = ".tmp"  # the suffix of atomic_file's temporaries: ".<name>.<random>.tmp" beside <name>


def umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it, which races with other threads)."""
    with contextlib.suppress(OSError, StopIteration), open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)  # no /proc (not Linux): set and restore
    os.umask(mask)
    return mask


class _RecordingFile:
    """The file handed to the writer, remembering the OSError a write raised: torch.save reports a failed
    write (a full disk) only as RuntimeError("unexpected pos"), which names neither the cause nor the file."""

    def __init__(self, file) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str):
        return getattr(self._file, name)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Yields a binary file beside `path`; when the block succeeds it is synced and renamed over `path`.
    The file gets the mode any new file gets (0644 under the usual umask 022), not mkstemp's private 0600, so
    a teammate can read a store, checkpoint or results.json that someone else wrote. A failed write (a full
    disk) raises OSError naming `path`, whatever the writer made of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY)
    recording = None
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            recording = _RecordingFile(f)
            yield recording
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        failed = error if isinstance(error, OSError) else getattr(recording, "error", None)
        if failed is not None and failed.filename is None:  # a failed write or fsync names no file
            raise OSError(failed.errno, failed.strerror, str(path)) from error
        raise


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Removes what writes into `folder` left when their process was killed (atomic_file's temporaries), at
    the start of a run, when no write can be under way; returns the files removed."""
    folder = Path(folder)
    stale = sorted(folder.glob(f".*{TEMPORARY}")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def exclusive(lock_path: str | Path, what: str):
    """Holds an exclusive lock on `lock_path` (created if missing) for the block: the jobs of a parallel
    sweep that share one dataset or store wait for the one preparing it, then find it complete."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another process that is preparing {what} (lock: {lock_path})", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))

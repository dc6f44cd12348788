"""A run directory holds one run at a time and one run's history.

- One process at a time: the main process holds an exclusive lock on `<run>/.lock` (flock, released by the
  kernel when the process dies, however it dies) for as long as it trains, evaluates and writes results; a
  second process is refused, naming the holder.
- One run's history: a fresh run (no `ckpt_path`, not a requeued SLURM job) moves everything an earlier run
  left (checkpoints, metrics, wandb files, results, Lightning's hpc checkpoints, the run record) into
  `<run>/previous-runs/<n>/`, together, and says so; nothing is deleted.
- The record, `<run>/run.json`: the run's id, and each attempt (a start, resumed or not) with its host,
  process, SLURM job, the checkpoint it resumed from and its seconds, so results.json's wall time adds up
  every attempt and a requeued SLURM job can tell its own run from an earlier job's.
- A mistaken command (user_errors_reported, around each entry point's task) exits with its message, and the run
  folder Hydra made for it is removed if nothing but Hydra wrote to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

from alexnet.base.atomic import atomic_write_json
from alexnet.base.errors import DiskFullError, UserError, disk_full, report

LOCK = ".lock"
RECORD = "run.json"
PREVIOUS = "previous-runs"  # report.py and the figures never read under it
# What a run writes in its directory; Hydra's .hydra/ and log file describe the newest command and stay.
UPLOAD = "wandb-upload"  # src/upload.py's joined wandb run (alexnet.training.wandb_history.write_run)
RUN_FILES = ("checkpoints", "csv", "tensorboard", "wandb", "wandb_id", UPLOAD, "results.json", RECORD)
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"  # Lightning's, written on SLURM's signal before it requeues the job


class RunDirectoryBusy(UserError):
    """Another process is training in this run directory."""


@contextlib.contextmanager
def locked(directory: Path):
    """Holds `directory`'s lock while the block runs; raises RunDirectoryBusy if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunDirectoryBusy(
                f"{directory} is in use by {holder}. Wait for that run to end (or stop it), or give this one "
                "another folder (hydra.run.dir=...); two runs in one folder would mix their checkpoints and logs."
            ) from None
        holder = f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} ({' '.join(sys.argv)})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def earlier_run(directory: Path) -> list[Path]:
    """What an earlier run left in `directory`."""
    found = [directory / name for name in RUN_FILES if (directory / name).exists()]
    found = [path for path in found if not (path.is_dir() and not any(path.iterdir()))]  # an empty folder is nothing
    return found + sorted(directory.glob(HPC_CHECKPOINTS))


def set_aside(directory: Path) -> Path | None:
    """Moves what an earlier run left into previous-runs/<n>/ (the first free n); returns that folder, or
    None when there was nothing."""
    found = earlier_run(directory)
    if not found:
        return None
    n = 1
    while (directory / PREVIOUS / str(n)).exists():
        n += 1
    target = directory / PREVIOUS / str(n)
    target.mkdir(parents=True)
    for path in found:
        path.rename(target / path.name)
    return target


def describe(folder: Path) -> str:
    """What a set-aside run was, in a few words, from its record and results."""
    facts = []
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        results = json.loads((folder / "results.json").read_text())
        facts.append(f"finished, {results['epochs']} epochs, top-1 error {results['top1_err']:.4f}")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        record = json.loads((folder / RECORD).read_text())
        facts.append(f"started {record['attempts'][0]['started']}")
    return ", ".join(facts) or "unfinished"


def slurm_job() -> str | None:
    """This process's SLURM job (an array task has its own id); a requeued job keeps it."""
    return os.environ.get("SLURM_JOB_ID")


def read_record(directory: Path) -> dict | None:
    path = directory / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record.get("id"), str) or not isinstance(record.get("attempts"), list):
            raise ValueError("no id or attempts")
    except (ValueError, AttributeError) as error:
        raise UserError(
            f"{path} is not a run record ({error}). Move it away (the run's checkpoints stay usable with "
            "ckpt_path=FILE), or start a fresh run."
        ) from error
    return record


def requeued(record: dict | None) -> bool:
    """Whether this process is a requeued SLURM job of the run `record` describes: the same job id."""
    job = slurm_job()
    return job is not None and record is not None and record["attempts"][-1].get("slurm_job") == job


class Attempt:
    """This process's attempt at the run: appended to run.json when it starts, its seconds updated whenever a
    checkpoint is written (so a killed attempt counts up to its last checkpoint) and when it ends."""

    def __init__(self, directory: Path, record: dict | None, resumed_from: str | None) -> None:
        self.directory, self.started = directory, time.time()
        self.record = record or {"id": uuid.uuid4().hex[:12], "attempts": []}
        self.record["attempts"].append(
            {
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "slurm_job": slurm_job(),
                "command": " ".join(sys.argv),
                "resumed_from": resumed_from,
                "seconds": 0.0,
            }
        )
        self.save()

    @property
    def run_id(self) -> str:
        return self.record["id"]

    def save(self) -> None:
        self.record["attempts"][-1]["seconds"] = round(time.time() - self.started, 1)
        try:
            atomic_write_json(self.directory / RECORD, self.record)
        except OSError as error:
            if not disk_full(error):
                raise
            raise DiskFullError(
                f"The disk is full: the run's record {self.directory / RECORD} could not be written; the previous one "
                "is intact. Free space, then resume with the same command plus ckpt_path=last."
            ) from error

    def wall_time(self) -> float:
        """Seconds of every attempt of the run, this one up to now."""
        self.save()
        return round(sum(a["seconds"] for a in self.record["attempts"]), 1)


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

    if not HydraConfig.initialized() or (hydra := HydraConfig.get()).output_subdir is None:
        return None  # prepare.py, summary.py: no run folder, they run in the working directory
    folder = Path(hydra.runtime.output_dir)
    log = folder / f"{hydra.job.name}.log"

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

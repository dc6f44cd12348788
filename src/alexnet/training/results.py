"""results.json, written and read in one place, with what produced its numbers (provenance)."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from alexnet.base.atomic import atomic_write_json
from alexnet.base.errors import DiskFullError, disk_full
from alexnet.data.store import Store, file_digest

FILENAME = "results.json"
ERRORS = ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop")  # the paper's numbers: 1 and 10 crops
REQUIRED = (*ERRORS, "num_classes", "epochs", "steps")
PACKAGES = ("torch", "lightning", "torchvision", "torchmetrics", "hydra-core", "numpy")


def write_results(run_dir: str | Path, results: dict) -> Path:
    missing = [key for key in REQUIRED if key not in results]
    if missing:
        raise ValueError(f"results lack {missing}")
    path = Path(run_dir) / FILENAME
    try:
        atomic_write_json(path, results)
    except OSError as error:
        if not disk_full(error):
            raise
        raise DiskFullError(
            f"The disk is full: {path} could not be written; the previous one, if any, is intact. The numbers were "
            f"{errors_line(results)}; the run's checkpoints are kept: free space and evaluate the best one with "
            "eval.py."
        ) from error
    return path


def run_results(errors: dict, store: Store, device: torch.device, wall_time_s: float, **facts) -> dict:
    """results.json's content, for train.py and eval.py alike: the error rates, the facts of the run
    (num_classes, epochs, steps, ...), the overrides it was started with, its wall time (every attempt's, for a
    resumed run) and its provenance."""
    return {
        **errors,
        **facts,
        "store_dir": str(store.root.resolve()),
        "wall_time_s": round(wall_time_s, 1),
        "overrides": task_overrides(),
        "provenance": provenance(store, device),
    }


def task_overrides() -> list[str]:
    """The overrides the run was started with, as results.json records them ([] outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def publish(run_dir: str | Path, results: dict) -> Path:
    """Writes results.json and prints where, with the error rates."""
    path = write_results(run_dir, results)
    print(f"results: {path}")
    print(errors_line(results))
    return path


def errors_line(results: dict) -> str:
    """The four error rates as train.py and eval.py print them (and the best validation epoch's, where kept)."""

    def rates(errors: dict) -> str:
        return "  ".join(f"{key}={errors[key]:.4f}" for key in ERRORS)

    best = results.get("best_on_val")
    if best is None or best["epoch"] == results["epochs"] - 1:
        return rates(results)
    return f"{rates(results)}\nbest on validation (epoch {best['epoch']}, chosen on these images): {rates(best)}"


def read_results(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    return json.loads(path.read_text())


def git_state(repo: str | Path) -> dict:
    """{"commit", "dirty"} of the git checkout at `repo` (dirty: a tracked file differs from the commit);
    None for both where there is no checkout (an installed package) or no git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _source_checkout() -> Path | None:
    """The repository this code runs from, when it runs from src/alexnet of a checkout (not site-packages)."""
    package = Path(__file__).resolve().parents[1]
    return package.parents[1] if package.parent.name == "src" and (package.parents[1] / ".git").exists() else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({os.cpu_count()} cores)" if device.type == "cpu" else str(device)


def provenance(store: Store, device: torch.device) -> dict:
    """What any number in results.json can be traced to: the code's commit, the store (its manifest's checksum,
    which covers every file's checksum, and its source), the package versions and the device."""
    store_facts = {
        "dir": str(store.root.resolve()),
        "manifest_xxh3": file_digest(store.root / "manifest.json"),
        "source": store.manifest["source"],
    }
    code = code_provenance(device)
    return {"git": code["git"], "store": store_facts, "packages": code["packages"], "device": code["device"]}


def code_provenance(device: torch.device) -> dict:
    """The code's commit (and whether the checkout differs from it), the package versions and the device."""
    checkout = _source_checkout()
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "git": git_state(checkout) if checkout is not None else {"commit": None, "dirty": None},
        "packages": packages,
        "device": device_name(device),
    }

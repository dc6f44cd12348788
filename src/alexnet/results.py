"""results.json, written and read in one place."""

from __future__ import annotations

import json
from pathlib import Path

from alexnet.atomic import atomic_write_json

FILENAME = "results.json"
REQUIRED = ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop", "num_classes", "epochs", "steps")


def write_results(run_dir: str | Path, results: dict) -> Path:
    missing = [key for key in REQUIRED if key not in results]
    if missing:
        raise ValueError(f"results lack {missing}")
    path = Path(run_dir) / FILENAME
    atomic_write_json(path, results)
    return path


def read_results(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    return json.loads(path.read_text())

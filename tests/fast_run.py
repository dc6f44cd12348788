"""What the tests share: where the repository is, the small input size, overrides for a small, fast run of the
real config (6 classes, SMALL-pixel crops, CSV logs), a narrow network for runs that test the plumbing around it,
and the environment for the repository's scripts run in a subprocess."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.network import model

ROOT = Path(__file__).resolve().parents[1]
SMALL = 67  # the smallest input the network takes (pool5 1x1), for tests where the size does not matter

FAST = [
    "logger=csv",
    "callbacks.progress=null",
    "data.sample.classes=6",
    "data.sample.train_per_class=6",
    "data.sample.val_per_class=3",
    "model.num_classes=6",
    f"data.crop_size={SMALL}",
    "data.batch_size=8",
    "data.eval_batch_size=9",
    "data.num_workers=0",
    "data.prepare_workers=1",
    "+trainer.enable_model_summary=false",
]

NARROW_FC = 256


@contextlib.contextmanager
def narrow_network():
    """fc6 and fc7 with NARROW_FC units instead of the paper's 4096, in this process, while it lasts. At 4096 the
    two layers hold most of the weights: every checkpoint (weights and momentum) is hundreds of MB to write and
    fsync, and every optimizer step updates them all. Runs that test what Lightning, the checkpoints and the
    data do with a network use this one; tests/test_model.py pins the paper's sizes, and conftest.paper_run
    trains the paper's width."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "FC_WIDTH", NARROW_FC)
        yield


def script_env(**extra: str) -> dict[str, str]:
    """The environment for a script run in a subprocess: offline wandb, and tests/ importable (a run's config can
    name the callbacks in tests/recorders.py)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": path, **extra}


def run_script(script: Path, *args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python script *args` in `cwd`, as a user runs it (script_env with `env`), its output captured as text."""
    command = [sys.executable, str(script), *args]
    return subprocess.run(command, cwd=cwd, env=script_env(**env), capture_output=True, text=True, timeout=timeout)

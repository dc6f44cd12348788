"""A kill or a termination costs minutes, not the run: through the real entry point, in subprocesses."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fast_run import FAST as FAST_RUN

ROOT = Path(__file__).parents[1]
FAST = [*FAST_RUN, "hydra.run.dir=run"]


def start(tmp_path, *overrides):
    # recorders.FirstStep appends where each fit's training started to first_steps.txt.
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": path}
    record = [
        "+callbacks.first_step._target_=recorders.FirstStep",
        f"+callbacks.first_step.path={tmp_path}/first_steps.txt",
    ]
    command = [sys.executable, str(ROOT / "src" / "train.py"), *FAST, *record, *overrides]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(path: Path, process, timeout=300.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_run_then_ckpt_path_last_finishes_the_configured_epochs(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    process = start(tmp_path, "trainer.max_epochs=15", "evaluate=false")
    wait_for(last, process)
    time.sleep(1.0)  # somewhere in the following epochs, perhaps in the middle of a save
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run was killed, not finished"
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]  # loads: not torn
    resumed = start(tmp_path, "trainer.max_epochs=15", "ckpt_path=last")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read().decode()[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs"] == 15 and results["steps"] == 15 * 4
    # The resumed process trained from the checkpoint the kill left, not from scratch.
    assert (tmp_path / "first_steps.txt").read_text().split("\n")[:2] == ["0 0", f"{killed_at} {killed_at // 4}"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    process = start(tmp_path, "trainer.max_epochs=1000", "evaluate=false")
    wait_for(last, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output[-3000:]
    assert "resume with ckpt_path=last" in output
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] >= 4 and state["epoch"] < 999


PREPARE = (
    "from alexnet.data.prepare import prepare; import sys; prepare(sys.argv[1], sys.argv[2], workers=2, chunk_size=4)"
)


@pytest.mark.slow
def test_preparation_killed_at_random_points_and_rerun_gives_the_uninterrupted_store(
    sample_root, sample_store, tmp_path
):
    store = tmp_path / "store"
    command = [sys.executable, "-c", PREPARE, str(sample_root), str(store)]
    rng = random.Random(0)
    for _ in range(3):  # three kills at random moments, each rerun resuming the last
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if (store / "manifest.json").exists():
            break
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    uninterrupted = {p.name: p.read_bytes() for p in sorted(sample_store.iterdir())}
    assert {p.name: p.read_bytes() for p in sorted(store.iterdir()) if not p.name.startswith(".")} == uninterrupted

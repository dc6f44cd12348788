"""A kill or a termination costs minutes, not the run: through the real entry point, in subprocesses."""

import csv
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

from alexnet.training.rundir import PREVIOUS
from fast_run import FAST as FAST_RUN
from fast_run import ROOT, script_env

FAST = [*FAST_RUN, "hydra.run.dir=run"]


def start(tmp_path, *overrides, environment=None):
    # recorders.FirstStep appends where each fit's training started to first_steps.txt.
    env = script_env(**(environment or {}))
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


@pytest.mark.slow
def test_sigterm_during_the_final_test_exits_cleanly_and_the_resumed_run_evaluates(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    terminate = [
        "+callbacks.terminate_in_test._target_=recorders.SignalSelf",
        "+callbacks.terminate_in_test.signal_name=SIGTERM",
        "+callbacks.terminate_in_test.hook=on_test_batch_start",
    ]
    process = start(tmp_path, "trainer.max_epochs=2", *terminate)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output[-3000:]
    assert "resume with ckpt_path=last" in output
    assert not (tmp_path / "run" / "results.json").exists()
    fitted = last.read_bytes()
    state = torch.load(last, map_location="cpu", weights_only=False)
    # still the fitted run's state (momentum and schedule included), not the tested network's, written mid-test
    assert state["global_step"] == 2 * 4 and state["optimizer_states"] and "lr_plateau" in state
    assert "Terminated during the final test" in output
    resumed = start(tmp_path, "trainer.max_epochs=2", "ckpt_path=last")
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs"] == 2 and results["steps"] == 8 and results["attempts"] == 2
    assert last.read_bytes() == fitted  # nothing was trained again
    assert (tmp_path / "first_steps.txt").read_text().split() == ["0", "0"]  # only the first process trained


@pytest.mark.slow
def test_a_second_process_on_the_same_run_directory_is_refused_and_the_first_finishes_whole(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    first = start(tmp_path, "trainer.max_epochs=1000", "evaluate=false")
    wait_for(last, first)
    second = start(tmp_path, "trainer.max_epochs=1000", "evaluate=false")  # a scheduler's double submission
    output = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 1, output[-3000:]
    assert f"run is in use by process {first.pid} on " in output and "Traceback" not in output
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        logged = {key for row in csv.DictReader(f) for key, value in row.items() if value}
    assert {"train/loss", "val/top1_err", "lr-PaperSGD/weights"} <= logged
    assert len(json.loads((tmp_path / "run" / "run.json").read_text())["attempts"]) == 1


def slurm_job(tmp_path, job_id: str, *overrides):
    """train.py as SLURM starts it (job `job_id`, one task), with a stand-in `scontrol` that records the requeue
    that Lightning asks for on SIGUSR1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.txt\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_JOB_ID": job_id, "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "alexnet", "SLURM_PROCID": "0"}
    slurm |= {"SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
    environment = {**slurm, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return start(tmp_path, "trainer.max_epochs=6", "evaluate=false", *overrides, environment=environment)


@pytest.mark.slow
def test_a_requeued_slurm_job_resumes_its_own_run_and_a_new_job_starts_afresh(tmp_path):
    run = tmp_path / "run"
    job = slurm_job(tmp_path, "100")
    wait_for(run / "checkpoints" / "last.ckpt", job)
    job.send_signal(signal.SIGUSR1)  # SLURM's warning before the time limit: Lightning saves hpc_ckpt_1 and requeues
    wait_for(tmp_path / "scontrol.txt", job)
    job.send_signal(signal.SIGKILL)  # then SLURM ends the job
    job.wait()
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "100"]
    saved = [run / "hpc_ckpt_1.ckpt", run / "checkpoints" / "last.ckpt"]
    newest = max(saved, key=lambda p: p.stat().st_mtime_ns)
    step = torch.load(newest, map_location="cpu", weights_only=False)["global_step"]
    requeued = slurm_job(tmp_path, "100")  # the same command, the same job id: not told to resume
    output = requeued.communicate(timeout=600)[0].decode()
    assert requeued.returncode == 0, output[-3000:]
    assert f"SLURM job 100 was requeued: it resumes its run from {newest}" in output
    assert (tmp_path / "first_steps.txt").read_text().split("\n")[:2] == ["0 0", f"{step} {step // 4}"]
    assert not (run / PREVIOUS).exists()
    fresh = slurm_job(tmp_path, "101")  # another job with the same command: a new run
    output = fresh.communicate(timeout=600)[0].decode()
    assert fresh.returncode == 0, output[-3000:]
    assert (tmp_path / "first_steps.txt").read_text().split("\n")[2] == "0 0"
    assert (run / PREVIOUS / "1" / "hpc_ckpt_1.ckpt").is_file()
    assert [a["slurm_job"] for a in json.loads((run / "run.json").read_text())["attempts"]] == ["101"]


@pytest.mark.slow
def test_sigterm_during_validation_saves_a_checkpoint_and_the_resumed_run_logs_each_epoch_once(tmp_path):
    # on_validation_batch_start: 2 sanity-check batches, 2 of epoch 0's validation, then epoch 1's first
    terminate = [
        "+callbacks.terminate_in_val._target_=recorders.SignalSelf",
        "+callbacks.terminate_in_val.signal_name=SIGTERM",
        "+callbacks.terminate_in_val.hook=on_validation_batch_start",
        "+callbacks.terminate_in_val.call=5",
    ]
    process = start(tmp_path, "trainer.max_epochs=3", *terminate)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0 and "Terminated during validation" in output, output[-3000:]
    assert not (tmp_path / "run" / "results.json").exists()
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4  # the end of epoch 0, not a state taken in epoch 1's validation
    resumed = start(tmp_path, "trainer.max_epochs=3", "ckpt_path=last")
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs"] == 3 and results["steps"] == 3 * 4
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        validated = [row["epoch"] for row in csv.DictReader(f) if row["val/top1_err"]]
    assert validated == ["0", "1", "2"]
    assert (tmp_path / "first_steps.txt").read_text().split("\n")[:2] == ["0 0", "4 1"]

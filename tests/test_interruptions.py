"""A kill or a termination costs minutes, not the run: through the real entry point (with a narrow network,
tests/narrow_train.py), in subprocesses. Each signal comes at a chosen point (recorders.SignalSelf, or a wrapped
step of the preparation), so that each test knows the state it interrupts and a fast machine cannot finish first."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from alexnet.data.chunks import progress_log_path
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
    command = [sys.executable, str(ROOT / "tests" / "narrow_train.py"), *FAST, *record, *overrides]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def signal_at(name: str, signal_name: str, hook: str, call: int = 1, pause: Path | None = None) -> list[str]:
    """Overrides adding callback `name`, a recorders.SignalSelf."""
    overrides = [
        f"+callbacks.{name}._target_=recorders.SignalSelf",
        f"+callbacks.{name}.signal_name={signal_name}",
        f"+callbacks.{name}.hook={hook}",
        f"+callbacks.{name}.call={call}",
    ]
    return overrides + ([f"+callbacks.{name}.pause={pause}"] if pause else [])


def wait_for(path: Path, process, timeout=300.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hook", "call", "killed_at"),
    [
        ("on_train_batch_start", 7, 4),  # step 6, in epoch 1: last.ckpt holds the end of epoch 0
        ("on_save_checkpoint", 3, 8),  # saving last.ckpt at the end of epoch 2, before the file is written
    ],
)
def test_sigkill_mid_run_then_ckpt_path_last_finishes_the_configured_epochs(tmp_path, hook, call, killed_at):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    process = start(tmp_path, "trainer.max_epochs=3", "evaluate=false", *signal_at("kill", "SIGKILL", hook, call))
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == -signal.SIGKILL, output[-3000:]  # killed where chosen, not finished
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == killed_at  # loads: not torn
    resumed = start(tmp_path, "trainer.max_epochs=3", "ckpt_path=last")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read().decode()[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["epochs"] == 3 and results["steps"] == 3 * 4
    assert results["overrides"][-2:] == ["trainer.max_epochs=3", "ckpt_path=last"]  # the command that finished it
    # The resumed process trained from the checkpoint the kill left, not from scratch.
    assert (tmp_path / "first_steps.txt").read_text().split("\n")[:2] == ["0 0", f"{killed_at} {killed_at // 4}"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    terminate = signal_at("sigterm", "SIGTERM", "on_train_batch_start", 7)  # step 6, in epoch 1
    process = start(tmp_path, "trainer.max_epochs=3", "evaluate=false", *terminate)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output[-3000:]
    assert f"Terminated: saved {last} at step 7; resume with ckpt_path=last" in output
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert (state["global_step"], state["epoch"]) == (7, 1)


# prepare(ROOT, STORE); given STEP CALL too, it SIGKILLs itself at the CALL-th call of prepare's function STEP,
# before that call runs: a kill at a known point
PREPARE = textwrap.dedent(
    """
    import os, signal, sys
    from alexnet.data import prepare as module

    root, store, *kill = sys.argv[1:]
    if kill:
        step, calls = kill[0], [int(kill[1])]
        real = getattr(module, step)

        def killed_at_a_call(*args, **kwargs):
            calls[0] -= 1
            if calls[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(module, step, killed_at_a_call)
    module.prepare(root, store, workers=2, chunk_size=4)
    """
)


@pytest.mark.slow
def test_preparation_killed_at_three_points_and_rerun_gives_the_uninterrupted_store(
    sample_root, sample_store, tmp_path
):
    store = tmp_path / "store"
    # 14 chunks of 4 (9 of train, 5 of val); each run resumes the one before and is killed at its `call`-th call
    for step, call, recorded in [
        ("record_chunk", 1, 0),  # the store set up, its first chunk written but not yet logged
        ("record_chunk", 6, 5),  # in the middle of the chunks
        ("statistics", 1, 14),  # every chunk done, the mean and PCA not yet computed
    ]:
        killed = subprocess.run(
            [sys.executable, "-c", PREPARE, str(sample_root), str(store), step, str(call)],
            capture_output=True,
            timeout=300,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-3000:]
        assert not (store / "manifest.json").exists()
        log = progress_log_path(store)
        assert (len(log.read_bytes().splitlines()) if log.exists() else 0) == recorded
    subprocess.run([sys.executable, "-c", PREPARE, str(sample_root), str(store)], check=True, timeout=300)
    uninterrupted = {p.name: p.read_bytes() for p in sorted(sample_store.iterdir())}
    assert {p.name: p.read_bytes() for p in sorted(store.iterdir()) if not p.name.startswith(".")} == uninterrupted


@pytest.mark.slow
def test_sigterm_during_the_final_test_exits_cleanly_and_the_resumed_run_evaluates(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    terminate = signal_at("terminate_in_test", "SIGTERM", "on_test_batch_start")
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
    paused = tmp_path / "paused"  # the first stands at step 5, in epoch 1, until the test removes this file
    terminate = signal_at("sigterm", "SIGTERM", "on_train_batch_start", 6, pause=paused)
    first = start(tmp_path, "trainer.max_epochs=3", "evaluate=false", *terminate)
    wait_for(paused, first)
    second = start(tmp_path, "trainer.max_epochs=3", "evaluate=false")  # a scheduler's double submission
    output = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 1, output[-3000:]
    assert f"run is in use by process {first.pid} on " in output and "Traceback" not in output
    paused.unlink()
    output = first.communicate(timeout=120)[0].decode()
    assert first.returncode == 0 and "Terminated: saved" in output, output[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6
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
    return start(tmp_path, "trainer.max_epochs=3", "evaluate=false", *overrides, environment=environment)


@pytest.mark.slow
def test_a_requeued_slurm_job_resumes_its_own_run_and_a_new_job_starts_afresh(tmp_path):
    run = tmp_path / "run"
    # SLURM's warning before the time limit at step 5 (Lightning saves hpc_ckpt_1 and requeues), its kill at step 6
    warning = signal_at("warning", "SIGUSR1", "on_train_batch_start", 6)
    job = slurm_job(tmp_path, "100", *warning, *signal_at("kill", "SIGKILL", "on_train_batch_start", 7))
    output = job.communicate(timeout=300)[0].decode()
    assert job.returncode == -signal.SIGKILL, output[-3000:]
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "100"]
    newest, step = run / "hpc_ckpt_1.ckpt", 5  # newer than last.ckpt, the end of epoch 0
    assert torch.load(newest, map_location="cpu", weights_only=False)["global_step"] == step
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
    terminate = signal_at("terminate_in_val", "SIGTERM", "on_validation_batch_start", 5)
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

"""Training through Lightning: fit, checkpoints, resume, split placement, the smoke run end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet.training import train

ROOT = Path(__file__).parents[1]
# A small, fast run: 6 classes, 163-pixel crops (pool5 is 4x4), CSV logging only.
FAST = [
    "logger=csv",
    "callbacks.progress=null",
    "data.sample.classes=6",
    "data.sample.train_per_class=6",
    "data.sample.val_per_class=3",
    "model.num_classes=6",
    "data.crop_size=163",
    "data.batch_size=8",
    "data.eval_batch_size=9",
    "data.num_workers=0",
    "data.prepare_workers=1",
    "+trainer.enable_model_summary=false",
]


def read_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_fit_evaluates_and_writes_results(compose, tmp_path):
    cfg = compose(*FAST, "trainer.max_epochs=2")
    results = train(cfg)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["epochs"] == 2 and saved["steps"] == 2 * (35 // 8) and saved["num_classes"] == 6
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("epoch") for name in checkpoints)
    metrics = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0]
    for column in ("train/loss", "train/top1_err", "train/top5_err", "val/top1_err", "val/top5_err", "lr-PaperSGD"):
        assert column in metrics


def test_resume_from_last_continues_with_optimizer_and_scheduler_state(compose, tmp_path):
    train(compose(*FAST, "trainer.max_epochs=1", "evaluate=false"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    first = read_checkpoint(last)
    assert first["global_step"] == 4
    assert first["optimizer_states"][0]["state"][0]["velocity"].abs().sum() > 0
    assert first["lr_schedulers"][0]["last_epoch"] == 0  # saved at validation end, before the epoch's step
    train(compose(*FAST, "trainer.max_epochs=2", "evaluate=false", "ckpt_path=last"))
    second = read_checkpoint(last)
    # One more epoch on top of the first, not two from scratch; the scheduler counted on from 0.
    assert second["global_step"] == 8
    assert second["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 2
    assert second["lr_schedulers"][0]["last_epoch"] == 2


def test_a_fresh_run_sets_old_checkpoints_aside(compose, tmp_path):
    train(compose(*FAST, "trainer.max_epochs=1", "evaluate=false"))
    train(compose(*FAST, "trainer.max_epochs=1", "evaluate=false"))
    assert (tmp_path / "run" / "checkpoints.previous-1" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_split_placement_trains_with_each_column_and_its_momentum_on_its_device(compose, tmp_path):
    cfg = compose(
        *FAST,
        "trainer.max_epochs=1",
        "evaluate=false",
        "model.placement=split",
        "model.devices=[cpu,cpu]",
        "+trainer.strategy._target_=alexnet.placement.ColumnPlacementStrategy",
        "+trainer.strategy.devices=${model.devices}",
    )
    train(cfg)
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    # The checkpoint holds the grouped layout, whatever the placement.
    assert state["state_dict"]["net.conv2.conv.weight"].shape == (256, 48, 5, 5)
    from alexnet.module import AlexNetModule

    module = AlexNetModule.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    for c, device in enumerate(module.net.devices):
        assert {p.device for p in module.net.column[c].parameters()} == {device}


@pytest.mark.slow
def test_smoke_experiment_runs_end_to_end_far_below_chance(tmp_path):
    """The README's first command, through the real entry point, wandb offline."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, str(ROOT / "src" / "train.py")], cwd=tmp_path, env=env, check=True, timeout=900)
    results = json.loads((tmp_path / "logs" / "smoke" / "baseline" / "results.json").read_text())
    assert results["num_classes"] == 10 and results["epochs"] == 12
    assert results["top1_err"] < 0.5, results  # chance is 0.9
    assert results["top1_err_10crop"] < 0.5, results
    assert list((tmp_path / "logs" / "smoke" / "baseline" / "wandb").glob("offline-run-*"))

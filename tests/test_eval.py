"""eval.py just works on a checkpoint: the network as it was trained, the data its run used, the accelerator
the machine has; overrides that contradict the checkpoint are refused, naming both values."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.errors import CheckpointError
from alexnet.evaluation import evaluate_checkpoints
from fast_run import FAST

ROOT = Path(__file__).parents[1]


@pytest.fixture
def trained(paper_run):
    """A short run of the paper's network on the sample set (6 classes, 67-pixel crops, LRN on): its results and
    best checkpoint."""
    results, _ = paper_run
    return results


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.lrn=false", "model.lrn=False but .* was trained with model.lrn=True"),
        ("model.activation=tanh", "model.activation=tanh but .* was trained with model.activation=relu"),
        ("data.crop_size=195", "data.crop_size=195 but .* was trained on 67-pixel crops"),
    ],
)
def test_overrides_that_contradict_the_checkpoint_are_refused_naming_both_values(compose, trained, override, message):
    cfg = compose(*FAST, f"ckpt_path={trained['checkpoint']}", override, run="eval")
    with pytest.raises(CheckpointError, match=message):
        evaluate_checkpoints(cfg)


def test_an_unreadable_checkpoint_is_a_clear_error(compose, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*broken.ckpt"):
        evaluate_checkpoints(compose(*FAST, f"ckpt_path={broken}", run="eval"))


@pytest.mark.slow
def test_the_readmes_eval_command_works_on_a_cpu_machine_with_the_checkpoints_data(trained, tmp_path):
    """`python src/eval.py experiment=full ckpt_path=FILE`: experiment=full trains on GPUs and ImageNet; the
    checkpoint came from the sample set on the CPU. eval.py takes the data and the network from the checkpoint
    and the accelerator from the machine, and prints the errors it writes."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "src" / "eval.py"), "experiment=full", f"ckpt_path={trained['checkpoint']}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("logs/eval/*/results.json")
    results = json.loads(path.read_text())
    for key in ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop"):
        assert results[key] == pytest.approx(trained[key]), key  # the same network on the same images
        assert f"{key}={results[key]:.4f}" in done.stdout
    assert results["model"]["num_classes"] == 6 and results["data"]["crop_size"] == 67
    assert results["epochs"] == trained["epochs"] == 1  # counted as train.py counts them
    assert (
        f"data.store_dir={trained['store_dir']}" in done.stdout or "on the data of the checkpoint's run" in done.stdout
    )
    assert results["store_dir"] == trained["store_dir"]

"""Resuming loses nothing: a run stopped and resumed twice, with random crops, flips, lighting and dropout on,
ends with the weights and the metrics history of a run that never stopped."""

import csv
from pathlib import Path

import pytest
import torch

from alexnet.loggers import ContinuingWriter
from alexnet.training import train
from fast_run import FAST

# Augmentation and dropout stay on (the smoke recipe's); no evaluation after fitting, as a killed run has none.
RUN = [*FAST, "evaluate=false", "trainer.log_every_n_steps=1"]


def rows(run: Path) -> list[dict]:
    with (run / "csv" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_a_run_stopped_and_resumed_twice_equals_one_that_never_stopped(compose, tmp_path):
    train(compose(*RUN, "trainer.max_epochs=3", run="straight"))
    train(compose(*RUN, "trainer.max_epochs=1", run="resumed"))
    train(compose(*RUN, "trainer.max_epochs=2", "ckpt_path=last", run="resumed"))
    # A kill after the checkpoint: a row of the next epoch was written, then the process was lost.
    log = tmp_path / "resumed" / "csv" / "metrics.csv"
    header = log.read_text().splitlines()[0].split(",")
    with log.open("a") as f:
        f.write(",".join("9" if column == "step" else "0.5" for column in header) + "\n")
    train(compose(*RUN, "trainer.max_epochs=3", "ckpt_path=last", run="resumed"))
    straight, resumed = rows(tmp_path / "straight"), rows(tmp_path / "resumed")
    assert [row["epoch"] for row in straight if row["val/top1_err"]] == ["0", "1", "2"]
    assert resumed == straight  # every row once, in order, with the same values
    for key, value in weights(tmp_path / "straight").items():
        assert torch.equal(weights(tmp_path / "resumed")[key], value), key


class FakeTrainer:
    loggers: tuple = ()
    global_step = 0
    global_rank = 0
    world_size = 1


def test_the_random_state_is_restored_when_training_starts_not_when_the_checkpoint_is_read():
    """The sanity check's validation batches come between reading the checkpoint and training; the run
    that never stopped had none there, so the generators are restored after them."""
    from alexnet.callbacks import ResumeState

    callback = ResumeState()
    torch.manual_seed(5)
    saved = callback.state_dict()
    expected = torch.rand(3)
    callback.load_state_dict(saved)
    torch.manual_seed(6)  # the resumed process's own start
    torch.rand(10)  # the sanity check, and anything else before training starts
    callback.on_train_start(FakeTrainer(), None)
    assert torch.equal(torch.rand(3), expected)


def test_the_csv_log_keeps_its_rows_before_the_checkpoints_step_and_its_columns(tmp_path):
    writer = ContinuingWriter(str(tmp_path))
    for step in range(4):
        writer.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
    writer.log_metrics({"val/top1_err": 0.5, "epoch": 0}, 3)  # epoch-end rows carry the epoch's last step
    writer.log_metrics({"lr": 0.01}, 4)  # the next epoch's first row: written, then the process was killed
    writer.save()
    reopened = ContinuingWriter(str(tmp_path))  # what a resumed process makes
    assert reopened.metrics_keys == sorted(["train/loss", "val/top1_err", "epoch", "lr", "step"])
    reopened.keep_before(4)  # the checkpoint was taken after 4 steps
    reopened.log_metrics({"lr": 0.01}, 4)
    reopened.save()
    with (tmp_path / "metrics.csv").open() as f:
        kept = list(csv.DictReader(f))
    assert [row["step"] for row in kept] == ["0", "1", "2", "3", "3", "4"]
    assert kept[4]["val/top1_err"] == "0.5" and kept[3]["train/loss"] == "0.25"
    fresh = ContinuingWriter(str(tmp_path))
    fresh.keep_before(0)  # a fresh run in the same folder starts a new file
    assert not (tmp_path / "metrics.csv").exists() and fresh.metrics_keys == []

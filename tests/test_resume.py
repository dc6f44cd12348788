"""Resuming loses nothing: a run stopped and resumed twice, with random crops, flips, lighting and dropout on,
ends with the weights and the metrics history (CSV and wandb) of a run that never stopped."""

import csv
import shutil
from pathlib import Path

import pytest
import torch

from alexnet.training.loggers import ContinuingWriter
from alexnet.training.train import train
from alexnet.training.wandb_history import merge, read_segment, segments, write_run
from fast_run import FAST
from wandb_files import wait_for_exit_records

# Augmentation and dropout stay on (the smoke recipe's); no evaluation after fitting, as a killed run has none.
# Both loggers: the CSV and wandb (offline in tests).
RUN = [*(o for o in FAST if o != "logger=csv"), "logger=default", "evaluate=false", "trainer.log_every_n_steps=1"]


def rows(run: Path) -> list[dict]:
    with (run / "csv" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def untimed(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "_timestamp"} for row in history]


@pytest.mark.slow
def test_a_run_stopped_and_resumed_twice_equals_one_that_never_stopped(compose, tmp_path, run_data_dir, narrow):
    def run(name: str, *overrides: str) -> None:
        train(compose(*RUN, *overrides, run=name, data_dir=run_data_dir))

    run("straight", "trainer.max_epochs=3")
    run("resumed", "trainer.max_epochs=1")
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    shutil.copy(last, tmp_path / "epoch0.ckpt")
    run("resumed", "trainer.max_epochs=2", "ckpt_path=last")
    # A kill while epoch 1's checkpoint was written, after its rows were logged (CSV and wandb): the atomic
    # write left epoch 0's checkpoint, and the run goes on from there.
    shutil.copy(tmp_path / "epoch0.ckpt", last)
    run("resumed", "trainer.max_epochs=3", "ckpt_path=last")
    straight, resumed = rows(tmp_path / "straight"), rows(tmp_path / "resumed")
    assert [row["epoch"] for row in straight if row["val/top1_err"]] == ["0", "1", "2"]
    assert resumed == straight  # every row once, in order, with the same values
    for key, value in weights(tmp_path / "straight").items():
        assert torch.equal(weights(tmp_path / "resumed")[key], value), key
    # wandb: three processes, three folders of one run; joined, the history of the run that never stopped.
    wait_for_exit_records(tmp_path)
    parts = segments(tmp_path / "resumed")
    run_id = (tmp_path / "resumed" / "wandb_id").read_text().strip()
    assert len(list((tmp_path / "resumed" / "wandb").glob("offline-run-*"))) == 3
    assert [part.run.run_id for part in parts] == [run_id] * 3
    assert [part.start_step for part in parts] == [0, 4, 4]
    (never_stopped,) = segments(tmp_path / "straight")
    assert [row["epoch"] for row in never_stopped.rows if "val/top1_err" in row] == [0, 1, 2]
    assert untimed(merge(parts)) == untimed(never_stopped.rows)  # each epoch's rows once, the values the same
    uploaded = read_segment(write_run(tmp_path / "resumed", mode="offline") / f"run-{run_id}.wandb")
    assert uploaded.run.run_id == run_id and uploaded.rows == merge(parts)
    assert uploaded.config == never_stopped.config


class FakeTrainer:
    loggers: tuple = ()
    global_step = 0
    global_rank = 0
    world_size = 1


def test_the_random_state_is_restored_when_training_starts_not_when_the_checkpoint_is_read():
    """The sanity check's validation batches come between reading the checkpoint and training; the run
    that never stopped had none there, so the generators are restored after them."""
    from alexnet.training.callbacks import ResumeState

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


@pytest.mark.slow
def test_a_finished_run_extended_by_an_epoch_with_loader_workers_equals_the_longer_run(
    compose, tmp_path, run_data_dir, narrow
):
    """The finished-run message says "raise trainer.max_epochs to train on": that must give the longer run's
    weights and rows. With loader workers, which prefetch from the sampler as soon as Lightning makes the first
    iterator (before it sets the epoch), the resumed epoch once trained on an earlier epoch's order."""
    extended = [*FAST, "data.num_workers=2", "trainer.log_every_n_steps=1"]
    train(compose(*extended, "trainer.max_epochs=3", run="straight", data_dir=run_data_dir))
    finished = train(compose(*extended, "trainer.max_epochs=2", run="extended", data_dir=run_data_dir))
    assert finished["epochs"] == 2
    longer = train(compose(*extended, "trainer.max_epochs=3", "ckpt_path=last", run="extended", data_dir=run_data_dir))
    assert longer["epochs"] == 3 and longer["attempts"] == 2
    assert rows(tmp_path / "extended") == rows(tmp_path / "straight")  # the 2-epoch run's test rows replaced too
    for key, value in weights(tmp_path / "straight").items():
        assert torch.equal(weights(tmp_path / "extended")[key], value), key

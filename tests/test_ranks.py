"""Data parallelism: each process draws from its own random stream, and a resumed run gives every process its own
stream back. Two CPU processes (gloo) through the real entry point, the network narrow (tests/narrow_train.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet.callbacks import RankSeed
from fast_run import FAST

ROOT = Path(__file__).parents[1]
# Random crops, flips, lighting and dropout on (the smoke recipe's); 36 images, 2 batches of 8 per process and epoch.
DDP = [*FAST, "evaluate=false", "callbacks.best=null", "+trainer.strategy=ddp", "trainer.devices=2"]


class FakeTrainer:
    def __init__(self, global_rank: int = 0, world_size: int = 1):
        self.global_rank, self.world_size = global_rank, world_size


def draws_after_setup(seed: int, rank: int) -> torch.Tensor:
    torch.manual_seed(seed)  # train(): every process alike
    torch.rand(5)  # the weights' initialisation
    RankSeed(seed).setup(FakeTrainer(rank, world_size=3), None, "fit")
    return torch.rand(5)


def test_every_rank_but_0_is_reseeded_from_the_seed_and_its_rank_and_rank_0_keeps_its_stream(monkeypatch):
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):  # set by seed_everything: put back after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    draws = {(seed, rank): draws_after_setup(seed, rank) for seed in (0, 1) for rank in (0, 1, 2)}
    torch.manual_seed(0)
    torch.rand(5)
    assert torch.equal(draws[0, 0], torch.rand(5)), "rank 0 draws what a one-process run drew before"
    assert len({tuple(d.tolist()) for d in draws.values()}) == 6, "a stream shared by two (seed, rank) pairs"
    assert all(torch.equal(draws_after_setup(*key), value) for key, value in draws.items()), "not reproducible"


def train_ddp(tmp_path: Path, run: str, *overrides: str) -> None:
    """A two-process run in tmp_path/run, recording each process's random stream (recorders.RandomStreams)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": path}
    record = [
        "+callbacks.streams._target_=recorders.RandomStreams",
        f"+callbacks.streams.path={tmp_path}/{run}/streams",
    ]
    where = [f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / run}"]
    command = [sys.executable, str(ROOT / "tests" / "narrow_train.py"), *DDP, *where, *record, *overrides]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """tmp/straight: 2 epochs; tmp/resumed: 1 epoch, then resumed from its last.ckpt to 2."""
    tmp_path = tmp_path_factory.mktemp("ranks")
    train_ddp(tmp_path, "straight", "trainer.max_epochs=2")
    train_ddp(tmp_path, "resumed", "trainer.max_epochs=1")
    train_ddp(tmp_path, "resumed", "trainer.max_epochs=2", "ckpt_path=last")
    return tmp_path


def recorded(run: Path, rank: int, kind: str) -> list[str]:
    lines = (run / f"streams.rank{rank}").read_text().splitlines()
    return [line.split(" ", 1)[1] for line in lines if line.startswith(kind)]


@pytest.mark.slow
def test_each_process_draws_its_own_crops_flips_lighting_and_dropout_the_same_in_every_run(runs):
    straight, resumed = runs / "straight", runs / "resumed"
    steps = [recorded(straight, rank, "step") for rank in (0, 1)]
    assert [s.split()[0] for s in steps[0]] == [s.split()[0] for s in steps[1]] == ["0", "1", "2", "3"]
    assert not set(steps[0]) & set(steps[1]), "the two processes' generators were alike at some step"
    # The same seed and rank give the same stream: the resumed run's first epoch repeats the straight run's.
    for rank in (0, 1):
        assert recorded(resumed, rank, "step")[:2] == steps[rank][:2]
    # The weights still start alike on every process (DDP would broadcast rank 0's, but nothing relies on that).
    assert recorded(straight, 0, "weights") == recorded(straight, 1, "weights")

"""Data parallelism: each process draws from its own random stream, and a resumed run gives every process its own
stream back. Two CPU processes (gloo) through the real entry point, the network narrow (tests/narrow_train.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet.training.callbacks import RankSeed, ResumeState
from fast_run import FAST, ROOT, script_env

# Random crops, flips, lighting and dropout on (the smoke recipe's); 36 images, 2 batches of 8 per process and epoch.
DDP = [*FAST, "evaluate=false", "callbacks.best=null", "+trainer.strategy=ddp", "trainer.devices=2"]


class FakeTrainer:
    loggers: tuple = ()
    global_step = 0

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


def test_each_rank_restores_its_own_generators_from_a_checkpoint_of_as_many_processes():
    states, expected = [], []  # what two processes' state_dict() gathered, and what each drew next
    for seed in (5, 6):
        torch.manual_seed(seed)
        states.append({"torch": torch.get_rng_state()})
        expected.append(torch.rand(3))
    for rank in (1, 0):
        callback = ResumeState()
        callback.load_state_dict({"ranks": states})
        torch.manual_seed(9)  # the resumed process's own start
        callback.on_train_start(FakeTrainer(rank, world_size=2), None)
        assert torch.equal(torch.rand(3), expected[rank])


def test_a_checkpoint_from_before_the_ranks_resumes_one_process_and_another_process_count_restores_nothing():
    torch.manual_seed(5)
    old = {"torch": torch.get_rng_state()}  # the format of checkpoints written before the generators were by rank
    expected = torch.rand(3)
    callback = ResumeState()
    callback.load_state_dict(old)
    torch.manual_seed(6)
    callback.on_train_start(FakeTrainer(), None)
    assert torch.equal(torch.rand(3), expected)
    # A one-process checkpoint resumed by two processes: each keeps the stream it was seeded with, and is told so.
    torch.manual_seed(7)
    own = torch.get_rng_state()
    with pytest.warns(UserWarning, match="generators of 1 process.*this run has 2: none is restored"):
        callback.on_train_start(FakeTrainer(1, world_size=2), None)
    assert torch.equal(torch.get_rng_state(), own)


def train_ddp(tmp_path: Path, run: str, *overrides: str) -> None:
    """A two-process run in tmp_path/run, recording each process's random stream (recorders.RandomStreams)."""
    env = script_env()
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


def last_weights(run: Path) -> dict:
    (last,) = run.rglob("last.ckpt")
    return torch.load(last, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_two_processes_stopped_after_an_epoch_and_resumed_end_with_the_weights_of_a_run_that_never_stopped(runs):
    straight, resumed = runs / "straight", runs / "resumed"
    for rank in (0, 1):  # each process got its own generators back, where the straight run had them
        assert recorded(resumed, rank, "step") == recorded(straight, rank, "step")
    expected = last_weights(straight)
    assert expected.keys() == last_weights(resumed).keys()
    for key, value in last_weights(resumed).items():
        assert torch.equal(value, expected[key]), key

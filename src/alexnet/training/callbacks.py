"""Callbacks that keep a run from losing work."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from alexnet.training.loggers import ContinuingWriter
from alexnet.training.rundir import Attempt


class CheckpointOnTerminate(L.Callback):
    """On SIGTERM (a scheduler's preemption, `kill`, Ctrl-\\), Lightning stops after the current batch; this
    writes the newest state to `dirpath`/last.ckpt first, so `ckpt_path=last` resumes from there. During
    validation and the final test it writes nothing: last.ckpt already holds the end of the previous epoch (or the
    fitted run), and Lightning would resume a checkpoint taken mid-validation without that epoch's validation (no
    row, no step of the schedule)."""

    def __init__(self, dirpath: str) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if trainer.state.fn != "fit":  # the final test: the module holds the best network, not the run's state
            rank_zero_info(
                f"Terminated during the final test: {self.path} still holds the fitted run; resume with "
                "ckpt_path=last to evaluate it"
            )
            return
        if trainer.validating:  # Lightning resumes a checkpoint taken mid-validation without that validation
            rank_zero_info(
                f"Terminated during validation: {self.path} holds the end of the previous epoch, from which "
                "ckpt_path=last resumes exactly (this epoch's training is done again)"
            )
            return
        trainer.save_checkpoint(self.path)
        rank_zero_info(f"Terminated: saved {self.path} at step {trainer.global_step}; resume with ckpt_path=last")


def rank_seed(seed: int, rank: int) -> int:
    """The seed of data-parallel process `rank` > 0: a hash of both, so no rank shares a stream with another rank
    or with the run of seed + 1 (as seed + rank would)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


class RankSeed(L.Callback):
    """One random stream per data-parallel process. train() seeds every process alike, so that the weights start
    alike; once the processes know their ranks (setup, before any draw of training), every rank but 0 is reseeded
    from (seed, rank), so that each draws its own crops, flips, lighting and dropout masks. Rank 0 keeps the
    stream it has: a one-process run's draws are those of a run before this callback existed. The sampler's order
    is not drawn from these generators: it is one permutation per (seed, epoch), shared by all ranks."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.global_rank > 0:
            L.seed_everything(rank_seed(self.seed, trainer.global_rank), workers=True, verbose=False)


def every_rank(value: object) -> list:
    """`value` of every data-parallel process, by rank; [value] in one process. Every process must call it."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values: list[object] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


class ResumeState(L.Callback):
    """What a resumed run needs, beyond Lightning's own checkpoint, to go on as if it had never stopped.

    The random generators (dropout, the augmentation's crops, flips and lighting, the loaders' seeds) of every
    process are saved in every checkpoint, by rank, and each process restores its own when training starts: after
    the sanity check's validation batches, which the uninterrupted run did not have at that point. A checkpoint of
    another number of processes restores none: each process keeps the stream it was seeded with (RankSeed), with a
    warning. The sampler needs nothing: its order is a function of the seed and the epoch. The CSV log is cut
    back, also when training starts, to the rows logged before the checkpoint's step: later rows (written before
    a kill) are logged again."""

    def __init__(self) -> None:
        self.restored: list[dict] | None = None

    def state_dict(self) -> dict:
        # Lightning asks every process for it when a checkpoint is written (only rank 0 writes the file).
        state: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            state["torch.cuda"] = torch.cuda.get_rng_state_all()
        return {"ranks": every_rank(state)}

    def load_state_dict(self, state_dict: dict) -> None:
        # Checkpoints from before the generators were saved by rank hold one process's, unlisted.
        self.restored = state_dict.get("ranks", [state_dict])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if isinstance(writer, ContinuingWriter):
                writer.keep_before(trainer.global_step)
        if self.restored is None:
            return
        if len(self.restored) != trainer.world_size:
            rank_zero_warn(
                f"The checkpoint holds the random generators of {len(self.restored)} process(es), and this run has "
                f"{trainer.world_size}: none is restored, each process draws from its own seed's stream. Training "
                "goes on, but not as the interrupted run would have."
            )
            return
        state = self.restored[trainer.global_rank]
        torch.set_rng_state(state["torch"])
        if "torch.cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["torch.cuda"])


class RecordAttempt(L.Callback):
    """Brings this attempt's seconds in run.json up to date whenever a checkpoint is written, so that a killed
    attempt's time counts up to the checkpoint the run goes on from."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.attempt.save()

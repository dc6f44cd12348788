"""Callbacks that keep a run from losing work."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from alexnet.loggers import ContinuingWriter
from alexnet.rundir import Attempt


class CheckpointOnTerminate(L.Callback):
    """On SIGTERM (a scheduler's preemption, `kill`, Ctrl-\\), Lightning stops after the current batch; this
    writes the newest state to `dirpath`/last.ckpt first, so `ckpt_path=last` resumes from there. During the
    final test it writes nothing: last.ckpt already holds the fitted run, which a resumed run evaluates."""

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
        trainer.save_checkpoint(self.path)
        rank_zero_info(f"Terminated: saved {self.path} at step {trainer.global_step}; resume with ckpt_path=last")


class ResumeState(L.Callback):
    """What a resumed run needs, beyond Lightning's own checkpoint, to go on as if it had never stopped.

    The random generators (dropout, the augmentation's crops, flips and lighting, the loaders' seeds) are
    saved in every checkpoint and restored when training starts: after the sanity check's validation
    batches, which the uninterrupted run did not have at that point. The sampler needs nothing: its order is
    a function of the seed and the epoch. The CSV log is cut back, also when training starts, to the rows
    logged before the checkpoint's step: later rows (written before a kill) are logged again."""

    def __init__(self) -> None:
        self.restored: dict | None = None

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            state["torch.cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if isinstance(writer, ContinuingWriter):
                writer.keep_before(trainer.global_step)
        if self.restored is None:
            return
        torch.set_rng_state(self.restored["torch"])
        if "torch.cuda" in self.restored and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.restored["torch.cuda"])


class RecordAttempt(L.Callback):
    """Brings this attempt's seconds in run.json up to date whenever a checkpoint is written, so that a killed
    attempt's time counts up to the checkpoint the run goes on from."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.attempt.save()

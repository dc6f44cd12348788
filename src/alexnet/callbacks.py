"""Callbacks that keep a run from losing work."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class CheckpointOnTerminate(L.Callback):
    """On SIGTERM (a scheduler's preemption, `kill`, Ctrl-\\), Lightning stops after the current batch; this
    writes the newest state to `dirpath`/last.ckpt first, so `ckpt_path=last` resumes from there."""

    def __init__(self, dirpath: str) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            rank_zero_info(f"Terminated: saved {self.path} at step {trainer.global_step}; resume with ckpt_path=last")

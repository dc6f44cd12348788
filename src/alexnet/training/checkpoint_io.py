"""Lightning's checkpoint writer, atomic and with the tensors' checksum (trainer.plugins in conf/trainer/default.yaml).
Here, not in alexnet.base.atomic, so that the entry points' imports before a config is checked load no Lightning."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from alexnet.base.atomic import atomic_file
from alexnet.base.checkpoints import with_digest
from alexnet.base.errors import DiskFullError, disk_full


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: a kill during a save leaves the previous checkpoint."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        try:
            with atomic_file(path) as f:
                torch.save(with_digest(checkpoint), f)
        except OSError as error:
            if not disk_full(error):
                raise
            free = shutil.disk_usage(Path(path).parent).free
            raise DiskFullError(
                f"The disk is full: the checkpoint {path} could not be written ({free / 1e6:,.0f} MB free on its "
                f"disk). The previous {Path(path).name}, if there was one, is intact. Free space, then resume with "
                "the same command plus ckpt_path=last."
            ) from error

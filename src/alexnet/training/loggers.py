"""Lightning's CSV and wandb loggers, made to continue a resumed run's history instead of starting it again.

Lightning's CSVLogger deletes an earlier metrics.csv in its folder when it starts ("Previous log files in
this directory will be deleted"), and WandbLogger starts a new wandb run each time. Here a run resumed with
`ckpt_path=...` keeps both: the CSV is cut back to the rows logged before the checkpoint's step when
training starts again (`alexnet.training.callbacks.ResumeState`), and the wandb run of the run directory is resumed
by its id. Offline, each process writes its own folder of that id, which wandb does not join:
`alexnet.training.wandb_history` (`src/upload.py`) does.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from alexnet.base.atomic import atomic_write_bytes
from alexnet.base.errors import DiskFullError, disk_full


class ContinuingWriter(ExperimentWriter):
    """Keeps an earlier metrics.csv and its columns, so that new rows are appended under the same header."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def save(self) -> None:
        try:
            super().save()
        except OSError as error:
            if not disk_full(error):
                raise
            raise DiskFullError(
                f"The disk is full: the metrics log {self.metrics_file_path} could not be written. The checkpoints "
                "written so far are kept: free space, then resume with the same command plus ckpt_path=last (the "
                "log's rows after the checkpoint are logged again)."
            ) from error

    def keep_before(self, step: int) -> None:
        """Keep only the rows logged before `step`: a run resumed from a checkpoint taken at that step logs
        the later ones again (and a fresh run, step 0, starts an empty file)."""
        self.metrics = []
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            kept = [row for row in reader if int(row["step"]) < step]
            header = list(reader.fieldnames or [])
        if not kept:
            self._fs.rm_file(self.metrics_file_path)
            self.metrics_keys = []
            return
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_bytes(self.metrics_file_path, text.getvalue().encode())
        self.metrics_keys = header


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger writing through a ContinuingWriter."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ContinuingWriter:
        if not isinstance(self._experiment, ContinuingWriter):  # None before the first use
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, one wandb run per training run however often it is resumed: the wandb run id
    is kept in the run directory (`wandb_id`), a new one for a fresh run, the same one when `ckpt_path` (the
    training run's own key) is set."""

    def __init__(self, save_dir: str, ckpt_path: str | None = None, **kwargs) -> None:
        id_file = Path(save_dir) / "wandb_id"
        if ckpt_path is not None and id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # set on the function by Lightning at import
                atomic_write_bytes(id_file, f"{run_id}\n".encode())
        super().__init__(save_dir=save_dir, id=run_id, resume="allow", **kwargs)


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger with one event file per process. Lightning closes the writer after every
    stage (the fit, then each test), and a new writer's file is named by the second it starts in: the 10-crop
    test's file replaced the 1-crop test's when both started within one second, losing test/top1_err."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()  # written out, and the writer kept for the next stage
        if status == "success":
            self.save()

"""What `python src/figure1.py` does: one run of Figure 1 (an activation, a learning rate, a seed) from its config
groups (the network and the data by `_target_`), trained until its training error first falls below
`stop.level` (or `trainer.max_epochs`), then results.json with the curve, why it stopped and what it came from."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig

from alexnet.base.atomic import atomic_write_json
from alexnet.base.config import plain
from alexnet.base.errors import ConfigError
from alexnet.training.classifier import ClassifierModule
from alexnet.training.results import FILENAME, code_provenance, task_overrides
from alexnet.training.rundir import describe, locked, set_aside

# Epochs are counted from 1 wherever a person reads them (results.json's curves, the report, the figure):
# the error "at epoch 6" is the one measured while training the sixth pass; Lightning's own logs count from 0.


class EpochLog(L.Callback):
    """Each epoch's training error (the mean over its training batches), test error, training seconds (without
    the test pass) and images/s, kept
    for results.json and printed as one line, so a run's progress reads the same in a terminal and in a file."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._started = self._trained = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._trained = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self._trained = time.perf_counter()  # the epoch's training ends here, before its test pass

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        seconds = self._trained - self._started
        images = len(trainer.datamodule.tensors["train_labels"])  # type: ignore[attr-defined]
        row = {
            "epoch": trainer.current_epoch + 1,
            "train_err": round(float(metrics["train/top1_err"]), 5),
            "test_err": round(float(metrics["val/top1_err"]), 5) if "val/top1_err" in metrics else None,
            "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds, 1),
        }
        if getattr(pl_module, "diverged_at", None) is not None:
            row["partial"] = True  # stopped within the epoch at a non-finite loss: its error is of the batches before
        self.rows.append(row)
        test = f", test error {row['test_err']:.4f}" if row["test_err"] is not None else ""
        rank_zero_info(
            f"epoch {row['epoch']}/{trainer.max_epochs}: training error {row['train_err']:.4f}{test}, "
            f"{row['seconds']:.1f} s ({row['images_per_s']:.0f} images/s)"
        )


def data_line(manifest: dict, num_classes: int) -> str:
    """What the run trains on, in one line; a store whose class count is not the network's is refused."""
    classes, source, splits = manifest["classes"], manifest["source"], manifest["splits"]
    if len(classes) != num_classes:
        raise ConfigError(
            f"model.num_classes={num_classes}, but data.root={source['path']} holds {len(classes)} classes "
            f"({', '.join(classes)}): give CIFAR-10's 10 class folders, or set model.num_classes={len(classes)}"
        )
    return (
        f"data: {source['path']} ({source['form']}), {len(classes)} classes, {splits['train']['images']:,} training "
        f"and {splits['test']['images']:,} test images, fingerprint {manifest['fingerprint_xxh3']}"
    )


def outcome(rows: list[dict], level: float, module: ClassifierModule, max_epochs: int) -> tuple[str, int | None]:
    """(why the run stopped, the first epoch whose training error is below `level`, or None)."""
    if module.diverged_at is not None:
        return "diverged", None
    reached = next((row["epoch"] for row in rows if row["train_err"] < level), None)
    if reached is not None:
        return "reached", reached
    return ("cap" if len(rows) >= max_epochs else "stalled"), None


def train_classifier(cfg: DictConfig) -> dict:
    """Fit one run in its directory (locked while it runs; an earlier run there is set aside, not deleted), then
    write results.json."""
    directory = Path(cfg.paths.output_dir)
    with locked(directory):
        done = finished(directory, cfg.trainer.max_epochs)
        if done is not None:
            print(
                f"{directory} has this command's results ({summary_line(done)}): nothing was changed. Delete its "
                f"{FILENAME} to train it again."
            )
            return done
        aside = set_aside(directory)
        if aside is not None:
            print(f"{directory} held an earlier run ({describe(aside)}): set aside in {aside}, nothing deleted")
        L.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data, seed=cfg.seed)
        datamodule.prepare_data()
        print(data_line(datamodule.manifest, cfg.model.num_classes))
        module = ClassifierModule(plain(cfg.model), **plain(cfg.optim), **plain(cfg.runtime))
        callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
        loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        started = time.perf_counter()
        trainer.fit(module, datamodule)
        log = next(c for c in callbacks if isinstance(c, EpochLog))
        results = run_results(cfg, datamodule, module, trainer, log.rows, time.perf_counter() - started)
        atomic_write_json(directory / FILENAME, results)
        print(f"results: {directory / FILENAME}")
        print(summary_line(results))
        return results


def finished(directory: Path, max_epochs: int) -> dict | None:
    """The results of this command's run in `directory` (the same overrides, a cap at least as high), if it ran to
    its end before: a sweep or tools/figure1.sh started again goes on from the first run it has not finished."""
    path = directory / FILENAME
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # torn or unreadable: the run is done again, and this file set aside with the rest
    if results.get("experiment") != "figure1" or _run_overrides(results.get("overrides", [])) != _run_overrides(
        task_overrides()
    ):
        return None
    return results if results.get("max_epochs", 0) >= max_epochs else None


def _run_overrides(overrides: list[str]) -> list[str]:
    """The overrides that make a run what it is: all but the stage and the cap (the screen's run and the check
    stage's longer run of the same rate and seed share a folder; the longer one holds the shorter)."""
    kept = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") not in ("stage", "trainer.max_epochs"):
            kept.append(f"{key}={value.strip(QUOTES)}")  # data.root='/x' and data.root=/x are one root
    return kept


QUOTES = "'\""


def run_results(
    cfg: DictConfig, datamodule, module: ClassifierModule, trainer: L.Trainer, rows: list[dict], seconds: float
) -> dict:
    level = float(cfg.stop.level)
    stopped, reached = outcome(rows, level, module, int(trainer.max_epochs or 0))
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)  # type: ignore[attr-defined]

    return {
        "experiment": "figure1",
        "activation": plain(cfg.model)["activation"],
        "lr": float(cfg.optim.lr),
        "momentum": float(cfg.optim.momentum),
        "batch_size": int(cfg.data.batch_size),
        "seed": int(cfg.seed),
        "level": level,
        "epochs_to_level": reached,
        "stopped": stopped,
        "stop_reason": stopper.stopping_reason_message if stopper is not None else None,
        "diverged_at_step": module.diverged_at,
        "max_epochs": int(trainer.max_epochs or 0),
        "precision": str(trainer.precision),
        "epochs": len(rows),
        "steps": int(trainer.global_step),
        "last_train_err": rows[-1]["train_err"] if rows else None,
        "last_test_err": rows[-1]["test_err"] if rows else None,
        "curve": rows,
        "training_error": "the mean error over each epoch's training batches, each scored as it was trained on",
        "wall_time_s": round(seconds, 1),
        "overrides": task_overrides(),
        "provenance": {**code_provenance(trainer.strategy.root_device), "data": data_provenance(datamodule)},
    }


def data_provenance(datamodule) -> dict:
    manifest = datamodule.manifest
    return {
        "store_dir": str(Path(datamodule.store_dir).resolve()),
        "source": manifest["source"],
        "fingerprint_xxh3": manifest["fingerprint_xxh3"],
        "classes": manifest["classes"],
        "images": {split: entry["images"] for split, entry in manifest["splits"].items()},
    }


def summary_line(results: dict) -> str:
    where = {
        "reached": f"training error below {results['level']:g} at epoch {results['epochs_to_level']}",
        "diverged": f"diverged at step {results['diverged_at_step']} (a non-finite loss)",
        "cap": f"not below {results['level']:g} in {results['epochs']} epochs (the cap)",
        "stalled": f"stopped after {results['epochs']} epochs without a lower training error",
    }[results["stopped"]]
    last = f"; last training error {results['last_train_err']:.4f}" if results["last_train_err"] is not None else ""
    return f"{results['activation']} lr={results['lr']:g} seed={results['seed']}: {where}{last}"

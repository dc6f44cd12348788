"""What `python src/train.py` does: build everything from the config, fit, evaluate the best checkpoint with
1 and 10 crops, write results.json."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from alexnet.config import plain
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.evaluation import evaluate
from alexnet.module import MONITOR, AlexNetModule
from alexnet.results import write_results
from alexnet.runtime import keep_freed_memory


def build(cfg: DictConfig) -> tuple[AlexNetModule, ImageNetDataModule]:
    """The model first: a bad model key fails here, before any data work."""
    module = AlexNetModule(plain(cfg.model), plain(cfg.optim), **plain(cfg.runtime))
    datamodule = ImageNetDataModule(**plain(cfg.data), seed=cfg.seed)
    datamodule.check_source()
    return module, datamodule


def _set_aside_old_checkpoints(directory: Path) -> None:
    """A fresh run in a directory that has checkpoints keeps them, renamed, rather than mixing with them."""
    if directory.is_dir() and any(directory.iterdir()):
        n = 1
        while directory.with_name(f"{directory.name}.previous-{n}").exists():
            n += 1
        directory.rename(directory.with_name(f"{directory.name}.previous-{n}"))


def train(cfg: DictConfig) -> dict:
    started = time.time()
    if cfg.trainer.get("accelerator") == "cpu":
        keep_freed_memory()
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = build(cfg)
    output_dir = Path(cfg.paths.output_dir)
    # A group entry set to null (callbacks.progress=null) turns that callback or logger off.
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor == MONITOR), None)
    if cfg.ckpt_path is None and checkpoint is not None and trainer.is_global_zero:
        _set_aside_old_checkpoints(Path(checkpoint.dirpath))
    trainer.fit(module, datamodule, ckpt_path=cfg.ckpt_path)

    results = {"name": cfg.name, "output_dir": str(output_dir), "store_dir": str(datamodule.store_dir.resolve())}
    if cfg.evaluate:
        best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
        results.update(evaluate(trainer, module, datamodule, best))
        results["checkpoint"] = best
        final = {f"final/{key}": results[key] for key in ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop")}
        for logger in loggers:  # one number per run, for the dashboard's bar charts and runs table
            logger.log_metrics(final, step=trainer.global_step)
            logger.save()
    results.update(
        num_classes=module.net.fc8.out_features,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        wall_time_s=round(time.time() - started, 1),
        overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
    )
    if trainer.is_global_zero:
        path = write_results(output_dir, results) if cfg.evaluate else None
        if path is not None:
            print(f"results: {path}")
            print(
                "  ".join(
                    f"{k}={results[k]:.4f}" for k in ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop")
                )
            )
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # so that the next job of a multirun gets its own wandb run
    return results

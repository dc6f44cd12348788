"""What `python src/train.py` does: build everything from the config, fit, evaluate the best checkpoint with
1 and 10 crops, write results.json."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from alexnet.atomic import remove_temporaries
from alexnet.checks import check
from alexnet.config import plain
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.data.prepare import describe_source
from alexnet.data.store import Store
from alexnet.errors import ConfigError
from alexnet.evaluation import evaluate
from alexnet.model import AlexNet
from alexnet.module import MONITOR, AlexNetModule
from alexnet.results import FILENAME, errors_line, publish, read_results, run_results


def build(cfg: DictConfig) -> tuple[AlexNetModule, ImageNetDataModule]:
    """The module and the datamodule, the data prepared. The network is first built on the meta device (no
    memory, no time), so a bad model key fails before any data work; its class count then comes from the
    store."""
    model = plain(cfg.model)
    devices = [str(torch.device(d)) for d in model["devices"] or []]  # a malformed device name fails here
    with torch.device("meta"):  # columns go to "meta" devices too: moving meta tensors to real ones fails
        AlexNet(**{**model, "num_classes": model["num_classes"] or 1, "devices": ["meta"] * len(devices) or None})
    datamodule = ImageNetDataModule(**plain(cfg.data), seed=cfg.seed)
    datamodule.check_source()
    datamodule.prepare_data()
    datamodule.setup()
    model["num_classes"] = num_classes(model["num_classes"], datamodule.store)
    return AlexNetModule(model, plain(cfg.optim), **plain(cfg.runtime)), datamodule


def num_classes(configured: int | None, store: Store) -> int:
    """model.num_classes: the store's class count when unset; a set value must agree with it."""
    if configured is None or configured == store.num_classes:
        return store.num_classes
    raise ConfigError(
        f"model.num_classes={configured}, but the store in data.store_dir={store.root} holds "
        f"{store.num_classes} classes (from {describe_source(store.manifest['source'])}). Set "
        f"model.num_classes={store.num_classes}, or model.num_classes=null to take it from the store; or choose "
        "the experiment made for this data (experiment=full: ILSVRC-2012, 1000 classes; experiment=smoke: the "
        "sample set)."
    )


def run_summary(cfg: DictConfig, datamodule: ImageNetDataModule, trainer: L.Trainer) -> str:
    """One screen, at the start of every run: what is about to be trained on what, and how."""
    store = datamodule.store
    manifest, optim = store.manifest, plain(cfg.optim)
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    processes = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
    rows = [
        ("experiment", f"{cfg.name}, writing to {cfg.paths.output_dir}"),
        ("data", f"{describe_source(manifest['source'])}, {manifest['source']['form']}"),
        ("store", f"{store.root} ({store.format}, {manifest['settings']['image_size']} px)"),
        ("classes", f"{store.num_classes}"),
        ("images", f"{train['images']:,} train ({len(train['skipped'])} skipped), {val['images']:,} val"),
        ("epochs", f"{trainer.max_epochs}"),
        ("batch", f"{datamodule.batch_size}{processes}"),
        ("lr", f"{optim['lr']} ({optim['rule']} rule, momentum {optim['momentum']})"),
        ("device", f"{trainer.strategy.root_device} x {trainer.num_devices} ({type(trainer.strategy).__name__})"),
        ("precision", f"{trainer.precision}"),
    ]
    return "\n".join(f"{key:<11}{value}" for key, value in rows)


def _set_aside_old_checkpoints(directory: Path) -> None:
    """A fresh run in a directory that has checkpoints keeps them, renamed, rather than mixing with them."""
    if directory.is_dir() and any(directory.iterdir()):
        n = 1
        while directory.with_name(f"{directory.name}.previous-{n}").exists():
            n += 1
        directory.rename(directory.with_name(f"{directory.name}.previous-{n}"))


def finished_results(cfg: DictConfig) -> dict | None:
    """The results of this run directory when ckpt_path=last asks to resume a run that already trained its
    epochs and wrote results.json: there is nothing left to do, and it says so."""
    path = Path(cfg.paths.output_dir) / FILENAME
    if cfg.ckpt_path != "last" or not path.is_file():
        return None
    results = read_results(path)
    if results.get("epochs", 0) < cfg.trainer.max_epochs:
        return None
    print(
        f"This run has finished its {results['epochs']} epochs: {path} has its results ({errors_line(results)}). "
        "Nothing was changed; raise trainer.max_epochs to train on, or drop ckpt_path=last to start afresh."
    )
    return results


def make_trainer(cfg: DictConfig) -> tuple[L.Trainer, ModelCheckpoint | None]:
    """The trainer with the configured callbacks and loggers (a group entry set to null, as in
    callbacks.progress=null, is left out), and the checkpoint callback that keeps the best network."""
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    best = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor == MONITOR), None)
    return trainer, best


def start_run_directory(cfg: DictConfig, trainer: L.Trainer, datamodule: ImageNetDataModule, best) -> None:
    """On the main process: the run's summary; temporaries that a killed write left removed; a fresh run's
    predecessor's checkpoints set aside."""
    if not trainer.is_global_zero:
        return
    print(run_summary(cfg, datamodule, trainer))
    checkpoint_dirs = {Path(c.dirpath) for c in trainer.checkpoint_callbacks if c.dirpath}  # fast_dev_run: none
    for folder in {Path(cfg.paths.output_dir), *checkpoint_dirs}:
        remove_temporaries(folder)
    if cfg.ckpt_path is None and best is not None:
        _set_aside_old_checkpoints(Path(best.dirpath))


def train(cfg: DictConfig) -> dict:
    """Fit, then test the best checkpoint with 1 and 10 crops, then write results.json (with evaluate=true)."""
    started = time.time()
    check(cfg)
    finished = finished_results(cfg)
    if finished is not None:
        return finished
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = build(cfg)
    trainer, best = make_trainer(cfg)
    start_run_directory(cfg, trainer, datamodule, best)
    trainer.fit(module, datamodule, ckpt_path=cfg.ckpt_path)
    checkpoint = best.best_model_path if cfg.evaluate and best is not None and best.best_model_path else None
    errors = evaluate(trainer, module, datamodule, checkpoint) if cfg.evaluate else {}
    results = run_results(
        errors,
        datamodule.store,
        trainer.strategy.root_device,
        started,
        name=cfg.name,
        output_dir=cfg.paths.output_dir,
        checkpoint=checkpoint,
        num_classes=module.net.fc8.out_features,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
    )
    if trainer.is_global_zero and cfg.evaluate:
        publish(cfg.paths.output_dir, results)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # so that the next job of a multirun gets its own wandb run
    return results

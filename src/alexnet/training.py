"""What `python src/train.py` does: build everything from the config, fit, evaluate the best checkpoint with
1 and 10 crops, write results.json."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
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
from alexnet.results import FILENAME, errors_line, provenance, read_results, write_results
from alexnet.runtime import keep_freed_memory


def build(cfg: DictConfig) -> tuple[dict, ImageNetDataModule]:
    """The model's keys and the datamodule, checked before any data work: the network is built on the meta
    device (no memory, no time), so a bad model key fails here; its class count comes later, from the store."""
    model = plain(cfg.model)
    devices = [str(torch.device(d)) for d in model["devices"] or []]  # a malformed device name fails here
    with torch.device("meta"):  # columns go to "meta" devices too: moving meta tensors to real ones fails
        AlexNet(**{**model, "num_classes": model["num_classes"] or 1, "devices": ["meta"] * len(devices) or None})
    datamodule = ImageNetDataModule(**plain(cfg.data), seed=cfg.seed)
    datamodule.check_source()
    return model, datamodule


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
    epochs and wrote results.json: there is nothing left to do."""
    path = Path(cfg.paths.output_dir) / FILENAME
    if cfg.ckpt_path != "last" or not path.is_file():
        return None
    results = read_results(path)
    return results if results.get("epochs", 0) >= cfg.trainer.max_epochs else None


def train(cfg: DictConfig) -> dict:
    started = time.time()
    check(cfg)
    finished = finished_results(cfg)
    if finished is not None:
        print(
            f"This run has finished its {finished['epochs']} epochs: {cfg.paths.output_dir}/{FILENAME} has its "
            f"results ({errors_line(finished)}). Nothing was changed; raise trainer.max_epochs to train on, or drop "
            "ckpt_path=last to start afresh."
        )
        return finished
    if cfg.trainer.get("accelerator") == "cpu":
        keep_freed_memory()
    L.seed_everything(cfg.seed, workers=True)
    model, datamodule = build(cfg)
    datamodule.prepare_data()  # the store decides the class count, so it is there before the network
    datamodule.setup()
    model["num_classes"] = num_classes(model["num_classes"], datamodule.store)
    module = AlexNetModule(model, plain(cfg.optim), **plain(cfg.runtime))
    output_dir = Path(cfg.paths.output_dir)
    # A group entry set to null (callbacks.progress=null) turns that callback or logger off.
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor == MONITOR), None)
    if trainer.is_global_zero:
        print(run_summary(cfg, datamodule, trainer))
    if trainer.is_global_zero:
        for folder in {output_dir, *(Path(c.dirpath) for c in callbacks if isinstance(c, ModelCheckpoint))}:
            remove_temporaries(folder)  # of writes that a kill interrupted
    if cfg.ckpt_path is None and checkpoint is not None and trainer.is_global_zero:
        _set_aside_old_checkpoints(Path(checkpoint.dirpath))
    trainer.fit(module, datamodule, ckpt_path=cfg.ckpt_path)

    results = {"name": cfg.name, "output_dir": str(output_dir), "store_dir": str(datamodule.store_dir.resolve())}
    if cfg.evaluate:
        best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
        results.update(evaluate(trainer, module, datamodule, best))
        results["checkpoint"] = best
    results.update(
        num_classes=module.net.fc8.out_features,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        wall_time_s=round(time.time() - started, 1),
        overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        provenance=provenance(datamodule.store, trainer.strategy.root_device),
    )
    if trainer.is_global_zero:
        path = write_results(output_dir, results) if cfg.evaluate else None
        if path is not None:
            print(f"results: {path}")
            print(errors_line(results))
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # so that the next job of a multirun gets its own wandb run
    return results

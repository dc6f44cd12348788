"""What `python src/train.py` does: build everything from the config, fit, evaluate the best checkpoint with
1 and 10 crops, write results.json."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from alexnet.base.atomic import remove_temporaries
from alexnet.base.checkpoints import read_checkpoint
from alexnet.base.config import plain
from alexnet.base.errors import ConfigError, UserError
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.data.identity import describe_source
from alexnet.data.store import Store
from alexnet.network.model import AlexNet
from alexnet.training.callbacks import RecordAttempt
from alexnet.training.checks import check
from alexnet.training.evaluation import evaluate
from alexnet.training.module import MONITOR, AlexNetModule
from alexnet.training.results import FILENAME, errors_line, publish, read_results, run_results
from alexnet.training.resume import check_agreement, newest_checkpoint, read_hyperparameters
from alexnet.training.rundir import Attempt, describe, locked, read_record, requeued, set_aside, slurm_job


def build(cfg: DictConfig) -> tuple[AlexNetModule, ImageNetDataModule]:
    """The module and the datamodule, the data prepared. The network is first built on the meta device (no
    memory, no time), so a bad model key fails before any data work; its class count then comes from the
    store."""
    model = plain(cfg.model)
    devices = [str(torch.device(d)) for d in model["devices"] or []]  # a malformed device name fails here
    # Columns go to "meta" devices too: moving meta tensors to real ones fails. Without a class count yet (the
    # store's, below), any the rule accepts.
    with torch.device("meta"):
        AlexNet(**{**model, "num_classes": model["num_classes"] or 2, "devices": ["meta"] * len(devices) or None})
    datamodule = ImageNetDataModule(**plain(cfg.data), seed=cfg.seed)
    datamodule.check_source()
    datamodule.prepare_data()
    datamodule.setup()
    model["num_classes"] = num_classes(model["num_classes"], datamodule.opened)
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
    store = datamodule.opened
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


def finished_results(cfg: DictConfig, directory: Path, record: dict | None, trained: dict | None) -> dict | None:
    """The results of this run when the checkpoint it resumes (whose hyperparameters are `trained`) is the
    network they describe and the run has trained its epochs: there is nothing left to do, and it says so.
    Results of an earlier run, or of fewer steps than the checkpoint's, are not this run's."""
    path = directory / FILENAME
    if trained is None or not path.is_file():
        return None
    results = read_results(path)
    if results.get("steps") != trained["global_step"] or results.get("epochs", 0) < cfg.trainer.max_epochs:
        return None
    if record is not None and results.get("run_id") not in (None, record["id"]):
        return None
    print(
        f"This run has finished its {results['epochs']} epochs: {path} has its results ({errors_line(results)}). "
        "Nothing was changed; raise trainer.max_epochs to train on, or drop ckpt_path=last to start afresh."
    )
    return results


def resume_from(cfg: DictConfig, directory: Path, record: dict | None) -> str | None:
    """The checkpoint this run goes on from: the one given, or with ckpt_path=last (and in a requeued SLURM job,
    which is not told) the run's newest, or None for a fresh start."""
    if cfg.ckpt_path not in (None, "last"):
        return str(cfg.ckpt_path)
    if cfg.ckpt_path == "last" or requeued(record):
        found = newest_checkpoint(directory, checkpoint_dir(cfg))
        if found is not None and cfg.ckpt_path is None:
            print(f"SLURM job {slurm_job()} was requeued: it resumes its run from {found}")
        return str(found) if found is not None else None
    return None


def checkpoint_dir(cfg: DictConfig) -> Path:
    """Where the run's last.ckpt is written (conf/callbacks: callbacks.last.dirpath)."""
    last = (cfg.callbacks or {}).get("last")
    return Path(last.dirpath) if last is not None else Path(cfg.paths.output_dir) / "checkpoints"


def best_on_validation(
    trainer: L.Trainer, module: AlexNetModule, datamodule: ImageNetDataModule, best: ModelCheckpoint | None, final: dict
) -> dict | None:
    """The epoch with the lowest val/top1_err, evaluated like the final network and kept beside it, never instead:
    chosen on the very images it is then scored on, its numbers are the minimum of many noisy measurements, and
    the paper reports its trained network. `final`: the final network's errors, the same when it is that epoch."""
    if best is None or not best.best_model_path:
        return None
    epoch = read_checkpoint(best.best_model_path, mmap=True)["epoch"]
    same = epoch == trainer.current_epoch - 1
    errors = final if same else evaluate(trainer, module, datamodule, best.best_model_path, stage="best_on_val")
    return {
        **errors,
        "epoch": epoch,
        "checkpoint": best.best_model_path,
        "selected_on": f"{MONITOR} of the validation set these errors are measured on: optimistic",
    }


def check_trainable(datamodule: ImageNetDataModule, world_size: int) -> None:
    """A run whose training split gives no full batch would train no step (incomplete batches are dropped)."""
    images = datamodule.opened.manifest["splits"]["train"]["images"]
    per_process = images // world_size
    if per_process < datamodule.batch_size:
        processes = f" each of the {world_size} processes gets" if world_size > 1 else ""
        raise ConfigError(
            f"data.batch_size={datamodule.batch_size} is larger than the {per_process} training images{processes} "
            f"(the store {datamodule.opened.root} holds {images}): incomplete batches are dropped, so not one step "
            f"would train. Set data.batch_size to at most {per_process}."
        )


def make_trainer(cfg: DictConfig, attempt: Attempt | None = None) -> tuple[L.Trainer, ModelCheckpoint | None]:
    """The trainer with the configured callbacks and loggers (a group entry set to null, as in
    callbacks.progress=null, is left out), and the checkpoint callback that keeps the best network. The main
    process's `attempt` is recorded in run.json at every checkpoint."""
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    if attempt is not None:
        callbacks.append(RecordAttempt(attempt))
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    best = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor == MONITOR), None)
    return trainer, best


def start_attempt(cfg: DictConfig, directory: Path, record: dict | None, checkpoint: str | None) -> Attempt:
    """This process's attempt at the run, recorded in run.json, once the temporaries that a killed write left are
    removed; a fresh run first sets an earlier one aside."""
    for folder in (directory, checkpoint_dir(cfg)):
        remove_temporaries(folder)
    if checkpoint is None:
        aside = set_aside(directory)
        if aside is not None:
            print(f"{directory} held an earlier run ({describe(aside)}): set aside in {aside}, nothing deleted")
        record = None
    return Attempt(directory, record, checkpoint)


def train(cfg: DictConfig) -> dict:
    """Fit, then test the final network (and the best validation epoch's) with 1 and 10 crops, then write
    results.json (with evaluate=true). The main process holds the run directory for the whole run."""
    check(cfg)
    directory = Path(cfg.paths.output_dir)
    # the other processes of a data-parallel run: the main one keeps the directory
    if rank_zero_only.rank != 0:  # type: ignore[attr-defined]  # .rank: set on the function by Lightning at import
        return run(cfg, directory, main=False)
    with locked(directory):
        return run(cfg, directory, main=True)


def run(cfg: DictConfig, directory: Path, main: bool) -> dict:
    """Everything is checked (the config, the checkpoint against it, the batch against the data) before the main
    process sets an earlier run aside or records this attempt."""
    record = read_record(directory)
    checkpoint = resume_from(cfg, directory, record)
    trained = read_hyperparameters(checkpoint) if checkpoint is not None else None
    finished = finished_results(cfg, directory, record, trained)
    if finished is not None:
        return finished
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = build(cfg)
    if checkpoint is not None and trained is not None:  # the one implies the other: both for the type checker
        model, optim = module.hparams["model"], module.hparams["optim"]
        check_agreement(trained, checkpoint, model, optim, dict(datamodule.hparams), datamodule.store_identity())
    check_trainable(datamodule, world_size=1)  # with more processes, once the trainer knows how many
    attempt = start_attempt(cfg, directory, record, checkpoint) if main else None
    cfg.ckpt_path = checkpoint  # what the loggers see: a resumed run continues its wandb run
    trainer, best = make_trainer(cfg, attempt)
    check_trainable(datamodule, trainer.world_size)
    if trainer.is_global_zero:
        print(run_summary(cfg, datamodule, trainer))
    trainer.fit(module, datamodule, ckpt_path=checkpoint)
    if trainer.global_step == 0:
        raise UserError(
            f"The run trained no step (trainer.limit_train_batches={trainer.limit_train_batches}, "
            f"{trainer.num_training_batches} training batches): there is nothing to evaluate, and no results "
            "were written."
        )
    final = checkpoint_dir(cfg) / "last.ckpt"
    errors = evaluate(trainer, module, datamodule) if cfg.evaluate else {}  # the network as training left it
    best_on_val = best_on_validation(trainer, module, datamodule, best, errors) if cfg.evaluate else None
    results = run_results(
        errors,
        datamodule.opened,
        trainer.strategy.root_device,
        attempt.wall_time() if attempt is not None else 0.0,
        network=f"the final network: the weights after epoch {trainer.current_epoch - 1} (0-based), step "
        f"{trainer.global_step}",
        best_on_val=best_on_val,
        name=cfg.name,
        output_dir=cfg.paths.output_dir,
        checkpoint=str(final) if final.is_file() else None,
        num_classes=module.net.fc8.out_features,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        run_id=attempt.run_id if attempt is not None else None,
        attempts=len(attempt.record["attempts"]) if attempt is not None else None,
    )
    if trainer.is_global_zero and cfg.evaluate:
        publish(cfg.paths.output_dir, results)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # so that the next job of a multirun gets its own wandb run
    return results

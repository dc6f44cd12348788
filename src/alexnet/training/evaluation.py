"""Top-1/top-5 error on val with 1 and 10 crops, of one checkpoint or of several averaged (Table 2's
"5 CNNs": the average of the networks' softmax outputs)."""

from __future__ import annotations

import time

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from alexnet.base.checkpoints import read_checkpoint
from alexnet.base.config import plain
from alexnet.base.errors import CheckpointError, ConfigError
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.network.model import trained_as
from alexnet.training.checks import check
from alexnet.training.metrics import TopKError
from alexnet.training.module import AlexNetModule, module_from_checkpoint
from alexnet.training.results import ERRORS, publish, run_results


class Ensemble(L.LightningModule):
    """Several trained networks whose class probabilities are averaged."""

    def __init__(self, members: list[AlexNetModule]) -> None:
        super().__init__()
        classes = {m.net.fc8.out_features for m in members}
        if len(classes) != 1:
            raise ValueError(f"ckpt_paths: the checkpoints have different numbers of classes {sorted(classes)}")
        self.members = nn.ModuleList(members)
        num_classes = classes.pop()
        self.test_top1, self.test_top5 = TopKError(num_classes, 1), TopKError(num_classes, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(images) for member in self.members]).mean(dim=0)

    test_step = AlexNetModule.test_step
    test_stage = AlexNetModule.test_stage


def evaluate(
    trainer: L.Trainer,
    module: AlexNetModule | Ensemble,
    datamodule: ImageNetDataModule,
    ckpt_path=None,
    stage: str = "test",
) -> dict:
    """Top-1 and top-5 error on val with the centre crop and with 10 crops, by trainer.test, of `module` as it is
    (ckpt_path None) or with the weights of ckpt_path: logged as `stage`/..., returned under results.json's names."""
    results = {}
    training_crops = datamodule.val_crops
    module.test_stage = stage
    try:
        for crops in (1, 10):
            datamodule.val_crops = crops
            metrics = trainer.test(module, datamodule, ckpt_path=ckpt_path, verbose=False)[0]
            results.update({name: float(metrics[f"{stage}/{name}"]) for name in ERRORS if f"{stage}/{name}" in metrics})
    finally:
        datamodule.val_crops, module.test_stage = training_crops, "test"
    return results


def given_overrides() -> dict[str, str]:
    """The key=value overrides given on the command line (or to compose), by key."""
    if not HydraConfig.initialized():
        return {}
    given = {}
    for override in HydraConfig.get().overrides.task:
        key, sep, value = override.partition("=")
        if sep:
            given[key.lstrip("+~")] = value
    return given


def _contradictions(cfg: DictConfig, paths: list[str], checkpoints: list[dict], given: dict[str, str]) -> list[str]:
    """Explicit model.* and crop overrides that differ from what a checkpoint's network was trained as."""
    model = plain(cfg.model)
    found = []
    for path, checkpoint in zip(paths, checkpoints, strict=True):
        trained = trained_as(checkpoint["hyper_parameters"]["model"])
        for key in given:
            name = key.removeprefix("model.")
            if key.startswith("model.") and name in trained and model.get(name) != trained[name]:
                found.append(f"{key}={model.get(name)} but {path} was trained with {key}={trained[name]}")
        if "data.crop_size" in given and cfg.data.crop_size != trained["input_size"]:
            found.append(
                f"data.crop_size={cfg.data.crop_size} but {path} was trained on {trained['input_size']}-pixel crops"
            )
    return found


def _data_of(path: str, checkpoint: dict) -> str:
    """What a checkpoint was trained on, in words that tell two datasets apart."""
    store = checkpoint.get("ImageNetDataModule", {}).get("store")
    data = checkpoint.get("datamodule_hyper_parameters", {})
    if store is not None:
        return f"the store with manifest checksum {store['manifest_xxh3']} ({data.get('store_dir')})"
    return f"data.root={data.get('root')}, data.store_dir={data.get('store_dir')}"


# data.* keys that choose the data itself; the default root and store_dir are derived from them (conf/data/).
SOURCE_KEYS = {"root", "store_dir", "sample", "store_format", "image_size"}


def evaluation_data(cfg: DictConfig, paths: list[str], checkpoints: list[dict], given: dict[str, str]) -> dict:
    """The data settings to evaluate on: the checkpoints' run's, with every data.* key given on the command line
    applied (data.sample.classes=20 replaces data.sample). Refused: checkpoints that hold no data settings, or
    members of an ensemble trained on different data, unless the command says which data to use."""
    named = any(key.startswith("data.") for key in given)
    if not named:
        unknown = [p for p, c in zip(paths, checkpoints, strict=True) if "datamodule_hyper_parameters" not in c]
        if unknown:
            raise CheckpointError(
                f"{', '.join(unknown)} holds no data settings (written before checkpoints kept them): say what it "
                "was trained on, e.g. data.root=... data.store_dir=... (experiment=smoke for the sample set)."
            )
        seen = {_data_of(p, c) for p, c in zip(paths, checkpoints, strict=True)}
        if len(seen) > 1:
            raise CheckpointError(
                "ckpt_paths: the checkpoints were trained on different data ("
                + "; ".join(f"{p}: {_data_of(p, c)}" for p, c in zip(paths, checkpoints, strict=True))
                + "): give the data to evaluate on with data.store_dir=... (and data.root=...)."
            )
    data = {**checkpoints[0].get("datamodule_hyper_parameters", {})} or {**plain(cfg.data), "seed": cfg.seed}
    configured = plain(cfg.data)
    keys = {k.split(".")[1] for k in given if k.startswith("data.")}
    if keys & SOURCE_KEYS:  # another source: its folders follow from the config, as train.py's would
        keys |= {"root", "store_dir"}
    data.update({key: configured[key] for key in keys})
    return data


def check_classes(paths: list[str], checkpoints: list[dict], store) -> None:
    """Every network must have been trained on the store's classes: as many, and the same WNIDs where the
    checkpoint names them. A network of other classes would score a meaningless number, or fail on a label."""
    wnids = store.manifest.get("wnids")
    found = []
    for path, checkpoint in zip(paths, checkpoints, strict=True):
        classes = checkpoint["hyper_parameters"]["model"]["num_classes"]
        trained_wnids = (checkpoint.get("ImageNetDataModule", {}).get("store") or {}).get("wnids")
        if classes != store.num_classes:
            found.append(f"{path} has {classes} classes, the store {store.root} {store.num_classes}")
        elif trained_wnids is not None and wnids is not None and trained_wnids != wnids:
            found.append(f"{path} was trained on other classes (WNIDs) than those of the store {store.root}")
    if found:
        raise CheckpointError(
            "eval.py scores a network on the classes it was trained on:\n  "
            + "\n  ".join(found)
            + "\nGive the data it was trained on (data.store_dir=...), or checkpoints trained on this store."
        )


def evaluate_checkpoints(cfg: DictConfig) -> dict:
    """eval.py: the networks the checkpoints were trained as, on the data their run used (the checkpoint's data
    settings; data.* keys given on the command line override them), on the accelerator the machine has. It reads
    a prepared store and never makes one."""
    started = time.time()
    check(cfg)
    paths = [str(p) for p in cfg.ckpt_paths] or ([str(cfg.ckpt_path)] if cfg.ckpt_path else [])
    if not paths:
        raise ConfigError("Give ckpt_path=FILE, or ckpt_paths=[FILE,FILE,...] for an ensemble.")
    checkpoints = [read_checkpoint(p) for p in paths]  # each read once
    given = given_overrides()
    contradictions = _contradictions(cfg, paths, checkpoints, given)
    if contradictions:
        raise CheckpointError(
            "eval.py builds each network as its checkpoint was trained; these overrides contradict it:\n  "
            + "\n  ".join(contradictions)
            + "\nDrop them (the checkpoint's settings are used), or evaluate a checkpoint trained with them."
        )
    data = evaluation_data(cfg, paths, checkpoints, given)
    datamodule = ImageNetDataModule(**data)
    if not datamodule.store_complete():
        raise CheckpointError(
            f"No store at data.store_dir={datamodule.store_dir}: eval.py reads a prepared store and never makes one. "
            "Give data.store_dir=... of the run's store (moved?), or prepare it first with src/prepare.py."
        )
    datamodule.setup()
    check_classes(paths, checkpoints, datamodule.opened)
    members = [module_from_checkpoint(checkpoint, one_device=True) for checkpoint in checkpoints]
    module = members[0] if len(members) == 1 else Ensemble(members)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    whose = "the checkpoint's run" if "datamodule_hyper_parameters" in checkpoints[0] else "this config"
    print(
        f"evaluating {len(paths)} checkpoint(s) as trained ({members[0].net.fc8.out_features} classes) on the data "
        f"of {whose}: data.root={data['root']}, data.store_dir={data['store_dir']}; "
        f"{trainer.strategy.root_device}, precision {trainer.precision}"
    )
    results = run_results(
        evaluate(trainer, module, datamodule),
        datamodule.opened,
        trainer.strategy.root_device,
        time.time() - started,
        checkpoints=paths,
        model=dict(members[0].hparams["model"]),  # as evaluated: the checkpoint's, on one device
        data=data,
        num_classes=members[0].net.fc8.out_features,
        epochs=max(c["epoch"] for c in checkpoints) + 1,  # a checkpoint holds its epoch's 0-based index
        steps=max(c["global_step"] for c in checkpoints),
    )
    publish(cfg.paths.output_dir, results)
    return results

"""Top-1/top-5 error on val with 1 and 10 crops, of one checkpoint or of several averaged (Table 2's
"5 CNNs": the average of the networks' softmax outputs)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from alexnet.config import plain
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.metrics import TopKError
from alexnet.module import MONITOR, AlexNetModule, module_from_checkpoint
from alexnet.results import provenance, write_results


class Ensemble(L.LightningModule):
    """Several trained networks whose class probabilities are averaged."""

    def __init__(self, members: list[AlexNetModule]) -> None:
        super().__init__()
        classes = {m.net.fc8.out_features for m in members}
        if len(classes) != 1:
            raise ValueError(f"ckpt_paths: the checkpoints have different numbers of classes {sorted(classes)}")
        self.members = nn.ModuleList(members)
        num_classes = classes.pop()
        self.val_top1, self.val_top5 = TopKError(num_classes, 1), TopKError(num_classes, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(images) for member in self.members]).mean(dim=0)

    validation_step = AlexNetModule.validation_step


def evaluate(trainer: L.Trainer, module: L.LightningModule, datamodule: ImageNetDataModule, ckpt_path=None) -> dict:
    """Top-1 and top-5 error on val with the centre crop and with 10 crops."""
    results = {}
    training_crops = datamodule.val_crops
    for crops, suffix in ((1, ""), (10, "_10crop")):
        datamodule.val_crops = crops
        metrics = trainer.validate(module, datamodule, ckpt_path=ckpt_path, verbose=False)[0]
        results[f"top1_err{suffix}"] = float(metrics[MONITOR])
        results[f"top5_err{suffix}"] = float(metrics["val/top5_err"])
    datamodule.val_crops = training_crops
    return results


def evaluate_checkpoints(cfg: DictConfig) -> dict:
    started = time.time()
    paths = list(cfg.ckpt_paths) or ([cfg.ckpt_path] if cfg.ckpt_path else [])
    if not paths:
        raise ValueError("Give ckpt_path=FILE, or ckpt_paths=[FILE,FILE,...] for an ensemble.")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"ckpt_path: no checkpoint at {missing}")
    checkpoints = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]  # each read once
    members = [module_from_checkpoint(checkpoint) for checkpoint in checkpoints]
    module = members[0] if len(members) == 1 else Ensemble(members)
    datamodule = ImageNetDataModule(**plain(cfg.data), seed=cfg.seed)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    results = evaluate(trainer, module, datamodule)
    results.update(
        checkpoints=[str(p) for p in paths],
        store_dir=str(datamodule.store_dir.resolve()),
        num_classes=members[0].net.fc8.out_features,
        epochs=max(c["epoch"] for c in checkpoints),
        steps=max(c["global_step"] for c in checkpoints),
        wall_time_s=round(time.time() - started, 1),
        overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        provenance=provenance(datamodule.store, trainer.strategy.root_device),
    )
    path = write_results(cfg.paths.output_dir, results)
    print(f"results: {path}")
    return results

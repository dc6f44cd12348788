"""The LightningModule: cross-entropy, the paper's SGD and schedule, top-1/top-5 error, 10-crop evaluation."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import ReduceLROnPlateau

from alexnet.metrics import TopKError
from alexnet.model import AlexNet
from alexnet.optim import build_optimizer

MONITOR = "val/top1_err"


class AlexNetModule(L.LightningModule):
    """`model` holds AlexNet's keyword arguments (config `model.`), `optim` the optimiser's (config `optim.`)."""

    def __init__(self, model: dict, optim: dict, channels_last: bool = False, compile: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = AlexNet(**model)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.step_net = torch.compile(self.net) if compile else self.net
        classes = self.net.fc8.out_features
        self.train_top1, self.train_top5 = TopKError(classes, 1), TopKError(classes, 5)
        self.val_top1, self.val_top5 = TopKError(classes, 1), TopKError(classes, 5)
        self.optim = dict(optim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities. (B, 3, c, c) -> softmax; (B, n, 3, c, c) -> softmax averaged over the n crops
        (Section 4.1: "averaging the predictions made by the network's softmax layer on the ten patches")."""
        if images.ndim == 4:
            return self.step_net(images).softmax(dim=1)
        batch, crops = images.shape[:2]
        probs = self.step_net(images.flatten(0, 1)).softmax(dim=1)
        return probs.view(batch, crops, -1).mean(dim=1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.step_net(images)
        loss = F.cross_entropy(logits, labels)
        self.train_top1.update(logits, labels)
        self.train_top5.update(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/top1_err", self.train_top1, on_step=False, on_epoch=True)
        self.log("train/top5_err", self.train_top5, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        probs = self(images)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels)
        self.val_top1.update(probs, labels)
        self.val_top5.update(probs, labels)
        self.log("val/loss", loss, sync_dist=True)
        self.log(MONITOR, self.val_top1, on_epoch=True, prog_bar=True)
        self.log("val/top5_err", self.val_top5, on_epoch=True)

    def configure_optimizers(self):
        o = self.optim
        optimizer = build_optimizer(self.parameters(), o["rule"], o["lr"], o["momentum"], o["weight_decay"])
        # Section 5: divide by 10 when the validation error stops improving, three times in all. The floor
        # at lr * factor^max_drops is what stops a fourth division.
        scheduler = ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=o["lr_factor"],
            patience=o["patience"],
            min_lr=o["lr"] * o["lr_factor"] ** o["max_drops"] * (1 - 1e-6),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": MONITOR, "interval": "epoch", "frequency": 1},
        }

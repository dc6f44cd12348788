"""A network trained by SGD with momentum at one constant learning rate and nothing else (Figure 1's recipe: "no
regularization of any kind"): its training error is that of the epoch's training passes, as the authors' code
reported it (each batch scored by the weights that then learn from it), not a second pass after the epoch."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from alexnet.base.rules import require
from alexnet.training.metrics import TopKError


class ClassifierModule(L.LightningModule):
    """`model`: the network's config (its `_target_` and arguments), so that a checkpoint rebuilds it; `lr`,
    `momentum`, `weight_decay`: torch.optim.SGD's (v <- m v + g; w <- w - lr v), which at a constant rate is the
    authors' v <- m v - lr g; w <- w + v."""

    def __init__(
        self,
        model: dict,
        lr: float,
        momentum: float,
        weight_decay: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        require("optim", lr=lr, momentum=momentum, weight_decay=weight_decay)
        hyperparameters = {"model": model, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.save_hyperparameters({**hyperparameters, "channels_last": channels_last, "compile": compile})
        self.net = instantiate(model)
        if channels_last:  # faster for this net on the CPU too (BENCHMARKS.md, "Figure 1")
            self.net.to(memory_format=torch.channels_last)
        if compile:  # in place: the state_dict keeps one name per weight, compiled or not
            self.net.compile()
        classes = self.net.fc.out_features
        self.train_top1, self.val_top1 = TopKError(classes, 1), TopKError(classes, 1)
        self.diverged_at: int | None = None  # the step whose loss was not finite

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            # Too high a learning rate is one of the sweep's results, not a crash of the sweep: the run stops
            # here and results.json says it diverged.
            self.diverged_at = self.global_step
            self.trainer.should_stop = True
            return None  # no step on a non-finite gradient
        self.train_top1.update(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/top1_err", self.train_top1, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        self.val_top1.update(self(images), labels)
        self.log("val/top1_err", self.val_top1, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hparams
        return torch.optim.SGD(self.parameters(), lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"])

"""The LightningModule: cross-entropy, the paper's SGD and schedule, top-1/top-5 error, 10-crop evaluation."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import ReduceLROnPlateau

from alexnet.base.rules import require
from alexnet.network.model import AlexNet, network_state, trained_as
from alexnet.training.metrics import TopKError
from alexnet.training.optim import build_optimizer

MONITOR = "val/top1_err"  # drives the learning-rate schedule and the best checkpoint


class AlexNetModule(L.LightningModule):
    """`model` holds AlexNet's keyword arguments (config `model.`), `optim` the optimiser's (config `optim.`)."""

    def __init__(self, model: dict, optim: dict, channels_last: bool = False, compile: bool = False) -> None:
        super().__init__()
        # Refused here, not when fitting starts (after the data is prepared); decay_biases is either.
        require("optim", **{key: value for key, value in optim.items() if key != "decay_biases"})
        # Named rather than read from the caller's frame, which finds nothing once __init__ is wrapped (mutation
        # testing wraps every function) and would leave checkpoints without the network eval.py rebuilds.
        self.save_hyperparameters({"model": model, "optim": optim, "channels_last": channels_last, "compile": compile})
        self.net = AlexNet(**model)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if compile:
            # In place, so that the state_dict keeps one name per weight ("net.conv1...") compiled or not;
            # `torch.compile(self.net)` assigned to an attribute would register every weight a second time.
            self.net.compile()
        classes = self.net.fc8.out_features
        self.train_top1, self.train_top5 = TopKError(classes, 1), TopKError(classes, 5)
        self.val_top1, self.val_top5 = TopKError(classes, 1), TopKError(classes, 5)
        self.test_top1, self.test_top5 = TopKError(classes, 1), TopKError(classes, 5)
        self.optim = dict(optim)
        self.plateau: ReduceLROnPlateau | None = None
        self._plateau_state: dict | None = None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """fc8's outputs in fp32: under bf16/fp16 autocast the softmax, its average over crops, the loss and the
        metrics then all see fp32, whatever the network computed in."""
        return self.net(images).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities. (B, 3, c, c) -> softmax; (B, n, 3, c, c) -> softmax averaged over the n crops
        (Section 4.1: "averaging the predictions made by the network's softmax layer on the ten patches")."""
        if images.ndim == 4:
            return self.logits(images).softmax(dim=1)
        batch, crops = images.shape[:2]
        probs = self.logits(images.flatten(0, 1)).softmax(dim=1)
        return probs.view(batch, crops, -1).mean(dim=1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.logits(images)
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):  # the progress bar reads the loss every step anyway: no extra sync
            raise FloatingPointError(
                f"Non-finite training loss ({loss.item()}) at step {self.global_step} (epoch {self.current_epoch}). "
                "Training stopped; the checkpoints written so far are from before it. Lower optim.lr, or check "
                "the data (data.mean_subtraction, data.pca_lighting)."
            )
        self.train_top1.update(logits, labels)
        self.train_top5.update(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/top1_err", self.train_top1, on_step=False, on_epoch=True)
        self.log("train/top5_err", self.train_top5, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        """Each epoch's validation: val/top1_err is the curve the schedule and the best checkpoint follow."""
        evaluation_step(self, batch, "val", self.val_top1, self.val_top5)

    # What the final evaluation logs its numbers under: "test" for the final network; evaluation.evaluate
    # names another network's evaluation (the best validation epoch's) so that each name holds one network's number.
    test_stage = "test"

    def test_step(self, batch, batch_idx: int) -> None:
        """The final evaluation (alexnet.training.evaluation.evaluate): test/top1_err, or test/top1_err_10crop with 10
        crops, the names results.json gives the same numbers."""
        evaluation_step(self, batch, self.test_stage, self.test_top1, self.test_top5)

    def configure_optimizers(self):
        o = self.optim
        optimizer = build_optimizer(
            self.named_parameters(), o["rule"], o["lr"], o["momentum"], o["weight_decay"], o["decay_biases"]
        )
        # Section 5: divide by 10 when the validation error stops improving, three times in all (the floor
        # at lr * factor^max_drops is what stops a fourth division).
        self.plateau = ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=o["lr_factor"],
            patience=o["patience"],
            min_lr=o["lr"] * o["lr_factor"] ** o["max_drops"] * (1 - 1e-6),
        )
        if self._plateau_state is not None:
            self.plateau.load_state_dict(self._plateau_state)
        return optimizer

    # The schedule is stepped here rather than by Lightning: Lightning steps epoch schedulers after the
    # epoch's checkpoints are written and skips that step when resuming, so a resumed run would miss one
    # validation result. Stepped at validation end, the state in every checkpoint is complete.
    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.trainer.state.fn != "fit":
            return
        assert self.plateau is not None  # made by configure_optimizers, which fitting calls first
        self.plateau.step(float(self.val_top1.compute()))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.plateau is not None:
            checkpoint["lr_plateau"] = self.plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._plateau_state = checkpoint.get("lr_plateau")
        checkpoint["state_dict"] = prefixed(network_state(checkpoint["state_dict"]))


def evaluation_step(module: L.LightningModule, batch, stage: str, top1: TopKError, top5: TopKError) -> None:
    """Softmax (averaged over the crops of each image), its loss and the top-1/top-5 error, logged per epoch
    under `stage`/..., with "_10crop" after the name when the batch has 10 crops per image."""
    images, labels = batch
    suffix = "_10crop" if stage != "val" and images.ndim == 5 else ""  # val/top1_err: the monitored name
    probs = module(images)
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels)
    top1.update(probs, labels)
    top5.update(probs, labels)
    module.log(f"{stage}/loss{suffix}", loss, sync_dist=True)
    module.log(f"{stage}/top1_err{suffix}", top1, on_epoch=True, prog_bar=stage == "val")
    module.log(f"{stage}/top5_err{suffix}", top5, on_epoch=True)


def prefixed(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights under this module's keys ("net.conv1...")."""
    return {f"net.{key}": value for key, value in weights.items()}


def module_from_checkpoint(checkpoint: dict, one_device: bool = False) -> AlexNetModule:
    """The trained module of a checkpoint (a dict from torch.load), built from the checkpoint's own
    hyperparameters. one_device: grouped placement and no compilation, whatever the run used, as evaluation
    on one device and the figures want it."""
    hparams = dict(checkpoint["hyper_parameters"])
    hparams["model"] = trained_as(hparams["model"])
    if one_device:
        hparams["model"] = {**hparams["model"], "placement": "grouped", "devices": None}
        hparams["compile"] = False
    module = AlexNetModule(**hparams)
    module.load_state_dict(prefixed(network_state(checkpoint["state_dict"])))
    return module

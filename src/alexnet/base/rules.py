"""What each config key allows, and why, stated once. The Hydra check (alexnet.training.checks) runs every rule on
the composed config before the run directory exists; the constructors that plain-PyTorch users call (AlexNet,
LocalResponseNorm, ImageNetDataModule, SampleSpec, PaperSGD, AlexNetModule) run the rules of their arguments. Both
refuse a value with the same words: "key=value: must be what is allowed: why".

The schema (alexnet.base.config) takes its enumerations from here; the defaults live in conf/. Rules that need the
network (the crop size the layers can take) stay in alexnet.training.checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Activation(str, Enum):
    relu = "relu"
    tanh = "tanh"


class LRNConvention(str, Enum):
    paper = "paper"
    code = "code"


class Placement(str, Enum):
    grouped = "grouped"
    split = "split"  # type: ignore[assignment]  # the config's value; it hides str.split, which no one calls on a Placement


class Init(str, Enum):
    paper = "paper"
    caffe = "caffe"


class DropoutScaling(str, Enum):
    paper = "paper"
    inverted = "inverted"


class Rule(str, Enum):
    paper = "paper"
    torch = "torch"


class StoreFormat(str, Enum):
    raw = "raw"
    jpeg = "jpeg"


@dataclass(frozen=True)
class Interval:
    """Numbers from low up to high (None: no upper end); an open end is itself outside."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if value < self.low or (self.low_open and value == self.low):
            return False
        return self.high is None or value < self.high or (not self.high_open and value == self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class KeyRule:
    """One key's rule: an interval or a tuple of choices (an Enum: its values), why, and what null means where
    null is allowed."""

    key: str
    allowed: Interval | tuple | type[Enum]
    why: str = ""
    null: str | None = None

    def wanted(self) -> str:
        parts = [str(self.allowed)] if isinstance(self.allowed, Interval) else [str(c) for c in self._choices()]
        if self.null is not None:
            parts.insert(0, f"null ({self.null})")
        said = parts[-1] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"
        return f"{said}: {self.why}" if self.why else said

    def _choices(self) -> tuple:
        if isinstance(self.allowed, type):
            return tuple(c.value for c in self.allowed)
        assert isinstance(self.allowed, tuple), f"{self.key}: an interval has no choices"
        return self.allowed

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.null is not None
        if isinstance(self.allowed, Interval):
            try:
                return value in self.allowed
            except TypeError:  # not a number
                return False
        return getattr(value, "value", value) in self._choices()  # a composed config holds Enum members

    def problem(self, value: Any) -> str | None:
        """None if value is allowed, else "key=value: must be ..."."""
        if isinstance(value, float) and not math.isfinite(value):
            # inf passes `v > 0`, and nan fails every comparison only by accident: a float must be finite.
            return f"{self.key}={value}: must be finite and {self.wanted()}"
        if self.accepts(value):
            return None
        return f"{self.key}={getattr(value, 'value', value)}: must be {self.wanted()}"


RULES: dict[str, KeyRule] = {
    rule.key: rule
    for rule in (
        KeyRule("model.num_classes", Interval(2), null="as many as the store holds"),
        KeyRule("model.activation", Activation, "Section 3.1"),
        KeyRule("model.lrn_convention", LRNConvention, "alpha multiplies the plain sum, or alpha / n (the code)"),
        KeyRule("model.dropout", Interval(0, 1, high_open=True), "the probability of zeroing a unit (0.5 in 4.2)"),
        KeyRule("model.dropout_scaling", DropoutScaling, "x0.5 at test time (Section 4.2), or x2 in training"),
        KeyRule("model.columns", (1, 2), "Section 3.2"),
        KeyRule("model.placement", Placement, "both columns on one device, or one device per column"),
        KeyRule("model.remove_conv", (3, 4, 5), "a middle conv layer (Section 7)", null="the whole network"),
        KeyRule("model.init", Init, "Section 5's, or bvlc_alexnet's"),
        KeyRule("data.store_format", StoreFormat),
        KeyRule("data.image_size", Interval(1), "a number of pixels (256 in Section 2)"),
        KeyRule("data.crop_size", Interval(1), "a number of pixels (227)"),
        KeyRule("data.pca_lighting", Interval(0), "the std of the PCA colour noise (0.1 in 4.1; 0 is off)"),
        KeyRule("data.val_crops", (1, 10), "the centre crop, or Section 4.1's ten"),
        KeyRule("data.batch_size", Interval(1), "128 in Section 5"),
        KeyRule("data.eval_batch_size", Interval(1)),
        KeyRule("data.num_workers", Interval(0), "0 reads in the training process"),
        KeyRule("data.prepare_workers", Interval(1), null="all cores"),
        KeyRule("data.sample.classes", Interval(2)),
        KeyRule("data.sample.train_per_class", Interval(1)),
        KeyRule("data.sample.val_per_class", Interval(1)),
        KeyRule("data.sample.scale", Interval(0, low_open=True), "image sides are scale * (260..420) pixels"),
        KeyRule("optim.rule", Rule, "Section 5's update rule, or torch.optim.SGD's"),
        KeyRule("optim.lr", Interval(0, low_open=True), "0.01 in Section 5"),
        KeyRule("optim.momentum", Interval(0, 1, high_open=True), "0.9 in Section 5"),
        KeyRule("optim.weight_decay", Interval(0), "0.0005 in Section 5"),
        # 1 would never lower the rate on a plateau, and 0 would stop learning at the first one.
        KeyRule(
            "optim.lr_factor",
            Interval(0, 1, low_open=True, high_open=True),
            "the learning rate is multiplied by it on a plateau (0.1 in Section 5)",
        ),
        KeyRule("optim.patience", Interval(0), "epochs without improvement before a drop"),
        KeyRule("optim.max_drops", Interval(0), "3 in Section 5"),
        KeyRule("stop.level", Interval(0, 1, low_open=True, high_open=True), "a training error (0.25 in Figure 1)"),
        KeyRule("stop.patience", Interval(1), "epochs without a lower training error before a run stops"),
        KeyRule("trainer.max_epochs", Interval(1), "about 90 in Section 5"),
        KeyRule("trainer.log_every_n_steps", Interval(1)),
        KeyRule(
            "trainer.overfit_batches",
            (0,),
            "Lightning's overfit_batches swaps in a sampler of single images, and the datamodule reads whole "
            "batches (debug=limit runs on a few batches instead)",
        ),
    )
}


def require(group: str, **values: Any) -> None:
    """Raises ValueError naming each of `group`'s keys (e.g. "model") whose value its rule refuses."""
    found = [p for key, value in values.items() if (p := RULES[f"{group}.{key}"].problem(value))]
    if found:
        raise ValueError("; ".join(found))


def crop_problem(crop_size: int, image_size: int) -> str | None:
    if crop_size > image_size:
        return (
            f"data.crop_size={crop_size}: must be at most data.image_size={image_size} (crops are taken from the "
            "stored images)"
        )
    return None


def placement_problem(placement: Any, columns: int, devices: list) -> str | None:
    """model.placement=split puts each of two columns on its own device."""
    if getattr(placement, "value", placement) == "split" and (columns != 2 or len(devices) != 2):
        return (
            f"model.placement=split needs model.columns=2 and two model.devices, got columns={columns} and "
            f"devices={list(devices)}"
        )
    return None

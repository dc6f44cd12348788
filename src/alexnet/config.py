"""Structured configs: the schema behind conf/. A key that is not here, or a value of the wrong type or
outside an enumeration, fails at composition with a message naming the key (and the allowed values)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


class Activation(str, Enum):
    relu = "relu"
    tanh = "tanh"


class LRNConvention(str, Enum):
    paper = "paper"
    code = "code"


class Placement(str, Enum):
    grouped = "grouped"
    split = "split"


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


@dataclass
class ModelConfig:
    num_classes: int | None = None  # None: as many as the prepared store holds
    activation: Activation = Activation.relu
    lrn: bool = True
    lrn_convention: LRNConvention = LRNConvention.paper
    overlap_pool: bool = True
    dropout: float = 0.5
    dropout_scaling: DropoutScaling = DropoutScaling.paper
    columns: int = 2
    placement: Placement = Placement.grouped
    devices: list[str] = field(default_factory=lambda: ["cuda:0", "cuda:1"])
    remove_conv: int | None = None
    input_size: int = 227
    init: Init = Init.paper


@dataclass
class SampleConfig:
    classes: int = 10
    train_per_class: int = 40
    val_per_class: int = 10
    seed: int = 0
    scale: float = 1.0


@dataclass
class DataConfig:
    root: str = "???"
    store_dir: str = "???"
    store_format: StoreFormat = StoreFormat.raw
    image_size: int = 256
    crop_size: int = 227
    crops_flips: bool = True
    pca_lighting: float = 0.1
    mean_subtraction: bool = True
    val_crops: int = 1
    batch_size: int = 128
    eval_batch_size: int = 128
    num_workers: int = 4
    prepare_workers: int | None = None
    strict: bool = False
    sample: SampleConfig | None = None


@dataclass
class OptimConfig:
    rule: Rule = Rule.paper
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_biases: bool = False
    lr_factor: float = 0.1
    patience: int = 5
    max_drops: int = 3


@dataclass
class RuntimeConfig:
    channels_last: bool = False
    compile: bool = False


@dataclass
class PathsConfig:
    data_dir: str = "data"
    log_dir: str = "logs"
    output_dir: str = "???"


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    ckpt_path: str | None = None
    ckpt_paths: list[str] = field(default_factory=list)  # eval.py: several checkpoints, averaged
    evaluate: bool = True
    verify: bool = False  # prepare.py: check every byte of the store against its checksums
    tags: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    trainer: dict[str, Any] = field(default_factory=dict)
    logger: dict[str, Any] | None = None
    callbacks: dict[str, Any] | None = None


def run_name(override_dirname: str) -> str:
    """A run's directory and wandb job type, from its overrides ("model.lrn-false__data.crop_size-224"):
    "baseline" for none; only characters that a path and a Hydra override both take unquoted; shortened
    with a hash when the overrides would make a file name longer than file systems allow."""
    if not override_dirname:
        return "baseline"
    name = re.sub(r"[^A-Za-z0-9._+@-]", "_", override_dirname)
    if len(name) <= 120:
        return name
    return f"{name[:100]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def store_name(root: str, store_format: Any, image_size: int) -> str:
    """The default store folder's name: one per source (data.root's name and a hash of its absolute path) and
    settings, so two datasets never meet in one folder."""
    source = os.path.abspath(root)
    fmt = getattr(store_format, "value", store_format)
    return f"{os.path.basename(source)}-{hashlib.sha1(source.encode()).hexdigest()[:8]}-{fmt}-{image_size}"


def tasks_per_node(devices: Any) -> int:
    """hydra/launcher=slurm starts one task per GPU, so a node's task count is trainer.devices, which must
    then be a number (ddp's default, "auto", is for torchrun)."""
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    raise ValueError(
        f"hydra/launcher=slurm starts one task per GPU: set trainer.devices to the number of GPUs per node "
        f"(e.g. trainer.devices=8), not {devices!r}"
    )


def register() -> None:
    ConfigStore.instance().store(name="schema", node=Config)
    for name, resolver in (("run_name", run_name), ("tasks_per_node", tasks_per_node), ("store_name", store_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def plain(node) -> dict:
    """A config node as plain Python (enums as their names), for constructors that know nothing of OmegaConf."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


register()

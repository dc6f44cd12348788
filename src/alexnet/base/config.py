"""Structured configs: the schema behind conf/. A key that is not here, or a value of the wrong type or
outside an enumeration (alexnet.base.rules states them), fails at composition with a message naming the key (and
the allowed values)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from alexnet.base.rules import Activation, DropoutScaling, Init, LRNConvention, Placement, Rule, StoreFormat

# The schema holds types (the enumerations, like the ranges, are alexnet.base.rules'): every default is stated
# once, with its reason, in the YAML under conf/ (model/alexnet.yaml, data/imagenet.yaml, ...), where users look.


@dataclass
class ModelConfig:
    num_classes: int | None = MISSING
    activation: Activation = MISSING
    lrn: bool = MISSING
    lrn_convention: LRNConvention = MISSING
    overlap_pool: bool = MISSING
    dropout: float = MISSING
    dropout_scaling: DropoutScaling = MISSING
    columns: int = MISSING
    placement: Placement = MISSING
    devices: list[str] | None = MISSING
    remove_conv: int | None = MISSING
    input_size: int = MISSING
    init: Init = MISSING


@dataclass
class SampleConfig:
    classes: int = MISSING
    train_per_class: int = MISSING
    val_per_class: int = MISSING
    seed: int = MISSING
    scale: float = MISSING


@dataclass
class DataConfig:
    root: str = MISSING
    store_dir: str = MISSING
    store_format: StoreFormat = MISSING
    image_size: int = MISSING
    crop_size: int = MISSING
    crops_flips: bool = MISSING
    pca_lighting: float = MISSING
    mean_subtraction: bool = MISSING
    val_crops: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    num_workers: int = MISSING
    prepare_workers: int | None = MISSING
    strict: bool = MISSING
    sample: SampleConfig | None = MISSING


@dataclass
class OptimConfig:
    rule: Rule = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING
    decay_biases: bool = MISSING
    lr_factor: float = MISSING
    patience: int = MISSING
    max_drops: int = MISSING


@dataclass
class RuntimeConfig:
    channels_last: bool = MISSING
    compile: bool = MISSING


@dataclass
class PathsConfig:
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class Config:
    name: str = MISSING
    seed: int = MISSING
    ckpt_path: str | None = MISSING
    ckpt_paths: list[str] = MISSING
    evaluate: bool = MISSING
    verify: bool = MISSING
    upgrade: bool = MISSING
    tags: list[str] = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    trainer: dict[str, Any] = MISSING
    logger: dict[str, Any] | None = MISSING
    callbacks: dict[str, Any] | None = MISSING


@dataclass
class CifarModelConfig:
    _target_: str = MISSING
    activation: Activation = MISSING
    num_classes: int = MISSING


@dataclass
class CifarDataConfig:
    _target_: str = MISSING
    root: str = MISSING
    store_dir: str = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    download: bool = MISSING


@dataclass
class ClassifierOptimConfig:
    lr: float = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING


@dataclass
class StopConfig:
    level: float = MISSING
    patience: int = MISSING


@dataclass
class Figure1Config:
    """src/figure1.py's config (conf/figure1.yaml): Figure 1's net on CIFAR-10."""

    name: str = MISSING
    seed: int = MISSING
    tags: list[str] = MISSING
    model: CifarModelConfig = field(default_factory=CifarModelConfig)
    data: CifarDataConfig = field(default_factory=CifarDataConfig)
    optim: ClassifierOptimConfig = field(default_factory=ClassifierOptimConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    trainer: dict[str, Any] = MISSING
    logger: dict[str, Any] | None = MISSING
    callbacks: dict[str, Any] | None = MISSING


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
    ConfigStore.instance().store(name="figure1_schema", node=Figure1Config)
    for name, resolver in (("run_name", run_name), ("tasks_per_node", tasks_per_node), ("store_name", store_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def plain(node: DictConfig) -> dict:
    """A config node as plain Python (enums as their names), for constructors that know nothing of OmegaConf."""
    return cast(dict, OmegaConf.to_container(node, resolve=True, enum_to_str=True))  # a DictConfig's is a dict


register()

"""Every config value checked before any work. The schema (alexnet.base.config) fixes each key's type and choices;
this fixes the ranges and the keys that must agree, so that `optim.lr=-0.01` fails in a second, not after
hours of preparation, and `optim.lr_factor=-1` never trains with a negative learning rate.

The entry points run the check as a Hydra callback when the config is composed, before Hydra makes the run
directory, so a bad value leaves nothing behind; alexnet.training.train and alexnet.training.evaluation run it again for
callers that compose configs themselves. Before that, refuse_unknown_keys refuses a command-line key that the
schema lacks, listing the keys it has.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import typing
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet.base.config import Config
from alexnet.base.errors import ConfigError, report


def _positive_int(v: Any) -> bool:
    return v >= 1


# (key, allowed, what is allowed and why). A key that the config does not hold is not checked; a float must also
# be finite (inf and nan are refused for every key).
RANGES: tuple[tuple[str, Any, str], ...] = (
    ("model.num_classes", lambda v: v is None or v >= 2, "null (as many as the store holds) or at least 2"),
    ("model.dropout", lambda v: 0 <= v < 1, "in [0, 1): the probability of zeroing a hidden unit (0.5 in 4.2)"),
    ("model.columns", lambda v: v in (1, 2), "1 or 2 (Section 3.2)"),
    ("model.remove_conv", lambda v: v in (None, 3, 4, 5), "null, 3, 4 or 5: a middle conv layer (Section 7)"),
    ("data.image_size", _positive_int, "a positive number of pixels (256 in Section 2)"),
    ("data.crop_size", _positive_int, "a positive number of pixels (227)"),
    ("data.pca_lighting", lambda v: v >= 0, "at least 0: the std of the PCA colour noise (0.1 in 4.1; 0 is off)"),
    ("data.val_crops", lambda v: v in (1, 10), "1 (the centre crop) or 10 (Section 4.1)"),
    ("data.batch_size", _positive_int, "at least 1 (128 in Section 5)"),
    ("data.eval_batch_size", _positive_int, "at least 1"),
    ("data.num_workers", lambda v: v >= 0, "at least 0 (0 reads in the training process)"),
    ("data.prepare_workers", lambda v: v is None or v >= 1, "null (all cores) or at least 1"),
    ("data.sample.classes", lambda v: v >= 2, "at least 2"),
    ("data.sample.train_per_class", _positive_int, "at least 1"),
    ("data.sample.val_per_class", _positive_int, "at least 1"),
    ("data.sample.scale", lambda v: v > 0, "above 0"),
    ("optim.lr", lambda v: v > 0, "above 0 (0.01 in Section 5)"),
    ("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1) (0.9 in Section 5)"),
    ("optim.weight_decay", lambda v: v >= 0, "at least 0 (0.0005 in Section 5)"),
    ("optim.lr_factor", lambda v: 0 < v < 1, "in (0, 1): the learning rate is multiplied by it on a plateau (0.1)"),
    ("optim.patience", lambda v: v >= 0, "at least 0 epochs without improvement before a drop"),
    ("optim.max_drops", lambda v: v >= 0, "at least 0 (3 in Section 5)"),
    ("trainer.max_epochs", _positive_int, "at least 1 (about 90 in Section 5)"),
    ("trainer.log_every_n_steps", _positive_int, "at least 1"),
    (
        "trainer.overfit_batches",
        lambda v: v == 0,
        "0: Lightning's overfit_batches swaps in a sampler of single images, and the datamodule reads whole "
        "batches (debug=limit runs on a few batches instead)",
    ),
)


def _finite(v: Any) -> bool:
    """inf passes `v > 0`, and nan fails every comparison only by accident: a ranged float must be finite."""
    return not isinstance(v, float) or math.isfinite(v)


def _value(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    """(whether cfg holds key, its resolved value)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig) or leaf not in node:
        return False, None
    return True, OmegaConf.select(cfg, key)


def problems(cfg: DictConfig, devices: bool = False) -> list[str]:
    """Each out-of-range value or disagreement, as "key=value: what is allowed"; with `devices`, also a trainer
    that asks for a GPU this machine lacks."""
    found = _accelerator_problems(cfg) if devices else []
    for key, allowed, wanted in RANGES:
        present, value = _value(cfg, key)
        if not present:
            continue
        if not _finite(value):
            found.append(f"{key}={value}: must be finite and {wanted}")
            continue
        try:
            ok = bool(allowed(value))
        except TypeError:  # None where a number is needed
            ok = False
        if not ok:
            found.append(f"{key}={value}: must be {wanted}")
    found += _disagreements(cfg)
    return found


def _disagreements(cfg: DictConfig) -> list[str]:
    from alexnet.network.model import conv_specs, feature_size

    found = []
    model, data = cfg.get("model"), cfg.get("data")
    if model is not None and data is not None:
        if data.crop_size > data.image_size:
            found.append(
                f"data.crop_size={data.crop_size}: must be at most data.image_size={data.image_size} (crops are "
                "taken from the stored images)"
            )
        if model.input_size != data.crop_size:
            found.append(
                f"model.input_size={model.input_size}: must equal data.crop_size={data.crop_size} (the network "
                "is built for the crops it gets; leave model.input_size unset)"
            )
    if model is not None:
        if model.placement == "split" and (model.columns != 2 or len(model.devices or []) != 2):
            found.append(
                f"model.placement=split needs model.columns=2 and two model.devices, got columns={model.columns} "
                f"and devices={list(model.devices or [])}"
            )
        if model.columns in (1, 2) and model.remove_conv in (None, 3, 4, 5) and model.input_size >= 1:
            pool = 3 if model.overlap_pool else 2
            try:
                feature_size(model.input_size, conv_specs(model.columns, model.remove_conv), pool)
            except ValueError:
                found.append(f"data.crop_size={model.input_size}: too small for the network (pool5 would be empty)")
    found += _checkpoint_problems(cfg)
    return found


def _accelerator_problems(cfg: DictConfig) -> list[str]:
    """Lightning would refuse a GPU trainer without CUDA too, but only once torch has loaded and the run folder
    exists, and in its own words."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    if accelerator not in ("gpu", "cuda") or _cuda_available():
        return []
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.trainer", default=None)
    asked = f"trainer={choice} (trainer.accelerator={accelerator})" if choice else f"trainer.accelerator={accelerator}"
    return [
        f"{asked}: needs a CUDA GPU, and torch finds none on this machine; use trainer=cpu (or experiment=smoke, "
        "the sample dataset on the CPU)"
    ]


def _cuda_available() -> bool:
    import torch  # only for a config that asks for a GPU, which loads torch to train anyway

    return torch.cuda.is_available()


def _checkpoint_problems(cfg: DictConfig) -> list[str]:
    paths = list(cfg.get("ckpt_paths") or [])
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last"):  # "last": the run's newest checkpoint, if it has one yet
        paths.append(ckpt_path)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        return [f"ckpt_path: no checkpoint file at {', '.join(missing)} (give a .ckpt file, or ckpt_path=last)"]
    return []


def check(cfg: DictConfig, devices: bool = False) -> None:
    """Raises ConfigError listing every problem of cfg (problems())."""
    found = problems(cfg, devices)
    if found:
        raise ConfigError("the config cannot run:\n  " + "\n  ".join(found))


class CheckConfig(Callback):
    """Hydra callback: checks the composed config before Hydra makes the run directory. `devices`: the entry
    point runs a trainer (train.py, eval.py), whose accelerator this machine must have; prepare.py and
    summary.py do not (conf/tool.yaml), so they run on a CPU node with experiment=full's trainer=gpu."""

    def __init__(self, devices: bool = True) -> None:
        self.devices = devices

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)  # the sweep's shared values; each job's own are checked when it starts

    def _check(self, config: DictConfig) -> None:
        try:
            check(config, self.devices)
        except ConfigError as error:
            sys.exit(report(error))


def refuse_unknown_keys(conf_dir: str | Path, argv: list[str] | None = None) -> None:
    """Exits, listing each key of the command line that the schema lacks (unknown_keys), before Hydra composes
    the config. Hydra refuses `model.dropuot=0` itself, but advises `+model.dropuot=0`, which the structured
    config then takes (`+` opens it) and the network's constructor refuses only once torch has loaded."""
    from hydra._internal.utils import get_args_parser  # Hydra's own command line: its flags, then overrides

    overrides = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv).overrides
    groups = [p.name for p in Path(conf_dir).iterdir() if p.is_dir()]
    found = unknown_keys(overrides, groups)
    if found:
        sys.exit(report(ConfigError("the config has no such key:\n  " + "\n  ".join(found))))


def unknown_keys(overrides: list[str], groups: list[str]) -> list[str]:
    """Each override (`key=value`, `+key=value`, `++key=value`, `~key`) whose key is neither in the schema nor a
    config group (conf/<group>/), with the closest key and the keys beside it. trainer.*, logger.* and
    callbacks.* stay open: they take any argument of Lightning's Trainer, logger or callback classes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []  # malformed: Hydra says where
    found = []
    for override in parsed:
        key = override.key_or_group
        if "/" in key or override.package is not None:  # hydra/launcher=slurm, data@...: a group's choice
            continue
        problem = _unknown_key(key, groups)
        if problem:
            found.append(problem)
    return found


def _unknown_key(key: str, groups: list[str]) -> str | None:
    fields, prefix = _schema_fields(Config), ""
    for name in key.split("."):
        known = sorted(set(fields) | (set() if prefix else set(groups)))
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            where = f"{prefix}* holds" if prefix else "the config's keys and groups are"
            return f"{prefix}{name}{hint}: {where} {', '.join(known)}"
        schema = fields.get(name)
        if schema is None:  # a value, an open dict (trainer, logger, callbacks) or a group: Hydra checks the rest
            return None
        fields = _schema_fields(schema)
        prefix += f"{name}."
    return None


def _schema_fields(schema: type) -> dict[str, Any]:
    """A dataclass's fields, each with the dataclass it holds (ModelConfig for Config.model; SampleConfig for
    DataConfig.sample, which may be null), or None."""
    hints = typing.get_type_hints(schema)
    return {
        f.name: next((t for t in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(t)), None)
        for f in dataclasses.fields(schema)
    }

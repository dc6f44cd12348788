"""Every config value checked before any work. The schema (alexnet.base.config) fixes each key's type; this runs
each key's rule (alexnet.base.rules) and the rules between keys, so that `optim.lr=-0.01` fails in a second, not after
hours of preparation, and `optim.lr_factor=-1` never trains with a negative learning rate.

The entry points run the check as a Hydra callback when the config is composed, before Hydra makes the run
directory, so a bad value leaves nothing behind; alexnet.training.train and alexnet.training.evaluation run it again for
callers that compose configs themselves. Before that, refuse_unknown_keys refuses a command-line key that the
schema lacks, listing the keys it has.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet.base.config import Config
from alexnet.base.errors import ConfigError, report
from alexnet.base.rules import RULES, crop_problem, placement_problem


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
    refused = set()
    for key, rule in RULES.items():  # a key that the config does not hold is not checked
        present, value = _value(cfg, key)
        problem = rule.problem(value) if present else None
        if problem:
            found.append(problem)
            refused.add(key)
    found += _disagreements(cfg, refused)
    return found


def _disagreements(cfg: DictConfig, refused: set[str]) -> list[str]:
    """The rules between keys, for keys whose own values passed (`refused`: those that did not)."""
    from alexnet.network.model import conv_specs, feature_size

    model, data = cfg.get("model"), cfg.get("data")
    found = []
    if data is not None and "crop_size" in data and not refused & {"data.crop_size", "data.image_size"}:
        found.append(crop_problem(data.crop_size, data.image_size))
    if model is not None and "placement" in model:  # AlexNet's keys (Figure 1's net has none of these rules)
        found.append(placement_problem(model.placement, model.columns, list(model.devices or [])))
        if data is not None and model.input_size != data.crop_size:
            found.append(
                f"model.input_size={model.input_size}: must equal data.crop_size={data.crop_size} (the network "
                "is built for the crops it gets; leave model.input_size unset)"
            )
        elif not refused & {"model.columns", "model.remove_conv", "data.crop_size"}:
            pool = 3 if model.overlap_pool else 2
            try:
                feature_size(model.input_size, conv_specs(model.columns, model.remove_conv), pool)
            except ValueError as error:
                found.append(str(error))
    return [problem for problem in found if problem] + _checkpoint_problems(cfg)


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


def refuse_unknown_keys(conf_dir: str | Path, argv: list[str] | None = None, schema: type = Config) -> None:
    """Exits, listing each key of the command line that the schema lacks (unknown_keys), before Hydra composes
    the config. Hydra refuses `model.dropuot=0` itself, but advises `+model.dropuot=0`, which the structured
    config then takes (`+` opens it) and the network's constructor refuses only once torch has loaded."""
    from hydra._internal.utils import get_args_parser  # Hydra's own command line: its flags, then overrides

    overrides = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv).overrides
    groups = [p.name for p in Path(conf_dir).iterdir() if p.is_dir()]
    found = unknown_keys(overrides, groups, schema)
    if found:
        sys.exit(report(ConfigError("the config has no such key:\n  " + "\n  ".join(found))))


def unknown_keys(overrides: list[str], groups: list[str], schema: type = Config) -> list[str]:
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
        problem = _unknown_key(key, groups, schema)
        if problem:
            found.append(problem)
    return found


def _unknown_key(key: str, groups: list[str], schema: type) -> str | None:
    fields, prefix = _schema_fields(schema), ""
    for name in key.split("."):
        known = sorted(set(fields) | (set() if prefix else set(groups)))
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            where = f"{prefix}* holds" if prefix else "the config's keys and groups are"
            return f"{prefix}{name}{hint}: {where} {', '.join(known)}"
        inner = fields.get(name)
        if inner is None:  # a value, an open dict (trainer, logger, callbacks) or a group: Hydra checks the rest
            return None
        fields = _schema_fields(inner)
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

"""Each default is stated once, in the YAML under conf/; the constructors that plain-PyTorch users call keep the
paper's values, and they agree with the config key by key."""

import dataclasses
import inspect

import pytest
from omegaconf import MISSING

from alexnet.base import config
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.data.sample import SampleSpec
from alexnet.network.lrn import LocalResponseNorm
from alexnet.network.model import AlexNet
from alexnet.training.optim import PaperSGD

# Where the config and a constructor differ on purpose, and why.
ON_PURPOSE = {
    ("model", "num_classes"): "null in the config: as many classes as the store holds; 1000 in AlexNet (ILSVRC)",
    ("data", "root"): "no default in the datamodule: there is no dataset to assume",
    ("data", "store_dir"): "likewise: the config derives it from the source and the settings",
}


def constructor_defaults(cls) -> dict:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize(("group", "cls"), [("model", AlexNet), ("data", ImageNetDataModule)])
def test_the_paper_run_config_and_the_constructor_agree_key_by_key(compose, group, cls):
    cfg = config.plain(compose("experiment=full")[group])
    defaults = constructor_defaults(cls)
    keys = set(inspect.signature(cls.__init__).parameters) - {"self", "seed"}
    assert set(cfg) == keys, "every constructor argument is a config key, and the other way round"
    for key in sorted(keys):
        if (group, key) in ON_PURPOSE:
            continue
        assert cfg[key] == defaults[key], f"{group}.{key}: config {cfg[key]!r}, {cls.__name__} {defaults[key]!r}"


def test_the_sample_config_and_the_sample_spec_agree_and_the_lrn_takes_the_configs_convention(compose):
    cfg = compose()  # experiment=smoke: data=sample
    assert config.plain(cfg.data.sample) == dataclasses.asdict(SampleSpec())
    assert constructor_defaults(LocalResponseNorm)["convention"] == config.plain(cfg.model)["lrn_convention"]


def test_the_paper_run_config_and_the_optimizer_agree(compose):
    cfg = config.plain(compose("experiment=full").optim)
    defaults = constructor_defaults(PaperSGD)
    for key in ("lr", "momentum", "weight_decay"):
        assert cfg[key] == defaults[key], key


@pytest.mark.parametrize(
    "schema",
    [
        config.Config,
        config.ModelConfig,
        config.DataConfig,
        config.SampleConfig,
        config.OptimConfig,
        config.RuntimeConfig,
    ],
)
def test_the_schema_states_types_and_choices_not_defaults(schema):
    for field in dataclasses.fields(schema):
        if field.default_factory is not dataclasses.MISSING:  # a nested group, whose own fields are checked
            assert dataclasses.is_dataclass(
                field.type if not isinstance(field.type, str) else getattr(config, field.type)
            )
            continue
        assert field.default == MISSING, f"{schema.__name__}.{field.name} has a default in the schema"

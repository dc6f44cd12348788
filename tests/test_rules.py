"""Each key's rule, stated once (alexnet.base.rules), holds at its endpoints in the Hydra check and in every
constructor that takes the key: a value on the edge is accepted or refused as the rule means it (open or closed),
and both refuse it in the same words, naming the key."""

import contextlib
import copy

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from alexnet.base.rules import RULES, Interval, KeyRule
from alexnet.data.cifar_datamodule import CIFAR10DataModule
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.data.sample import SampleSpec
from alexnet.network.cifar import CifarConvNet
from alexnet.network.lrn import LocalResponseNorm
from alexnet.network.model import AlexNet
from alexnet.training.checks import problems
from alexnet.training.classifier import ClassifierModule
from alexnet.training.module import AlexNetModule
from alexnet.training.optim import PaperSGD
from conftest import compose_config

# key -> (values allowed, values refused), the endpoints among them: written out here, not derived from the
# rules, so that a rule with a wrong endpoint (optim.lr_factor up to and including 1) fails.
EDGES = {
    "model.num_classes": ([None, 2, 1000], [1, 0]),
    "model.activation": (["relu", "tanh"], ["sigmoid"]),
    "model.lrn_convention": (["paper", "code"], ["caffe"]),
    "model.dropout": ([0.0, 0.5, 0.999], [1.0, -0.001]),
    "model.dropout_scaling": (["paper", "inverted"], ["train"]),
    "model.columns": ([1, 2], [0, 3]),
    "model.placement": (["grouped", "split"], ["magic"]),
    "model.remove_conv": ([None, 3, 4, 5], [2, 6]),
    "model.init": (["paper", "caffe"], ["xavier"]),
    "data.store_format": (["raw", "jpeg"], ["png"]),
    "data.image_size": ([1, 256], [0]),
    "data.crop_size": ([1, 227], [0]),
    "data.pca_lighting": ([0.0, 0.1], [-0.001]),
    "data.val_crops": ([1, 10], [0, 5]),
    "data.batch_size": ([1, 128], [0]),
    "data.eval_batch_size": ([1], [0]),
    "data.num_workers": ([0, 8], [-1]),
    "data.prepare_workers": ([None, 1], [0]),
    "data.sample.classes": ([2], [1]),
    "data.sample.train_per_class": ([1], [0]),
    "data.sample.val_per_class": ([1], [0]),
    "data.sample.scale": ([0.001, 1.0], [0.0, -1.0]),
    "optim.rule": (["paper", "torch"], ["adam"]),
    "optim.lr": ([1e-6, 0.01], [0.0, -0.01]),
    "optim.momentum": ([0.0, 0.9, 0.999], [1.0, -0.1]),
    "optim.weight_decay": ([0.0, 0.0005], [-1e-9]),
    "optim.lr_factor": ([0.001, 0.1, 0.999], [0.0, 1.0, -1.0, 10.0]),
    "optim.patience": ([0, 5], [-1]),
    "optim.max_drops": ([0, 3], [-1]),
    "stop.level": ([0.001, 0.25, 0.999], [0.0, 1.0, -0.25]),
    "stop.patience": ([1, 5], [0]),
    "trainer.max_epochs": ([1, 90], [0]),
    "trainer.log_every_n_steps": ([1], [0]),
    "trainer.overfit_batches": ([0], [1, 4]),
}

CIFAR_NET = {"_target_": "alexnet.network.cifar.CifarConvNet", "activation": "relu", "num_classes": 10}
OPTIM = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "decay_biases": False}
OPTIM |= {"lr_factor": 0.1, "patience": 5, "max_drops": 3}


def alexnet(**kwargs):
    return AlexNet(**{"num_classes": 10, "input_size": 67, **kwargs})


def module(**optim):
    return AlexNetModule({"num_classes": 10, "input_size": 67}, {**OPTIM, **optim})


def datamodule(**kwargs):
    return ImageNetDataModule("root", "store", **kwargs)


def cifar_datamodule(**kwargs):
    return CIFAR10DataModule("root", "store", **kwargs)


def classifier(**optim):
    return ClassifierModule(CIFAR_NET, **{"lr": 0.01, "momentum": 0.9, **optim})


def paper_sgd(**kwargs):
    return PaperSGD([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def each(group: str, leaves: str, *builds) -> dict:
    """{group.leaf: [a constructor given leaf=value, for each of builds]} for each of the space-separated leaves."""
    return {f"{group}.{leaf}": [lambda v, b=b, leaf=leaf: b(**{leaf: v}) for b in builds] for leaf in leaves.split()}


# key -> each constructor that takes it, as a function of the key's value.
CONSTRUCTORS = {
    **each("model", "num_classes dropout dropout_scaling columns placement remove_conv init", alexnet),
    "model.activation": [lambda v: alexnet(activation=v), lambda v: CifarConvNet(activation=v)],
    "model.lrn_convention": [lambda v: alexnet(lrn_convention=v), lambda v: LocalResponseNorm(convention=v)],
    **each("data", "store_format crop_size pca_lighting val_crops", datamodule),
    **each("data", "batch_size eval_batch_size", datamodule, cifar_datamodule),
    **each("data", "num_workers prepare_workers", datamodule),
    "data.image_size": [lambda v: datamodule(image_size=v, crop_size=1)],
    **each("data.sample", "classes train_per_class val_per_class scale", SampleSpec),
    **each("optim", "lr momentum weight_decay", module, paper_sgd, classifier),
    **each("optim", "rule lr_factor patience max_drops", module),
}
# Keys that only the Hydra check sees: Lightning's Trainer takes them, not a constructor of this project.
# stop.*: conf/figure1.yaml hands them to Lightning's EarlyStopping.
HYDRA_ONLY = {
    "trainer.max_epochs",
    "trainer.log_every_n_steps",
    "trainer.overfit_batches",
    "stop.level",
    "stop.patience",
}


def cases(accepted: bool, keys=EDGES) -> list:
    return [(key, value) for key in sorted(keys) for value in EDGES[key][0 if accepted else 1]]


def test_every_rule_has_its_edges_and_a_constructor_unless_only_the_trainer_takes_it():
    assert set(EDGES) == set(RULES)
    assert set(CONSTRUCTORS) == set(RULES) - HYDRA_ONLY


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """The default config, composed once: each case below changes one key of a copy (composing per case took most
    of this file's time)."""
    from hydra.core.global_hydra import GlobalHydra

    yield compose_config(tmp_path_factory.mktemp("rules"))
    GlobalHydra.instance().clear()


def problems_with(composed, key: str, value) -> list[str]:
    """What the Hydra check finds in the config with key=value (added where the config has no such key)."""
    cfg = copy.deepcopy(composed)
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, force_add=True)
    return problems(cfg)


def said_of(key: str, value, found: list[str]) -> list[str]:
    return [problem for problem in found if problem.startswith(f"{key}={value}: must be ")]


# The schema refuses a name outside an enumeration when Hydra composes the config (tests/test_config.py).
ENUMS = {key for key, rule in RULES.items() if isinstance(rule.allowed, type)}


@pytest.mark.parametrize(("key", "value"), cases(True, set(EDGES) - ENUMS))
def test_the_hydra_check_accepts_a_value_inside_the_rule(composed, key, value):
    assert said_of(key, value, problems_with(composed, key, value)) == []


@pytest.mark.parametrize(("key", "value"), cases(False, set(EDGES) - ENUMS))
def test_the_hydra_check_refuses_a_value_outside_the_rule_naming_the_key_and_what_is_allowed(composed, key, value):
    assert len(said_of(key, value, problems_with(composed, key, value))) == 1


# model.num_classes=null is the store's count, which alexnet.training.train puts in before building the network.
@pytest.mark.parametrize(("key", "value"), [c for c in cases(True, CONSTRUCTORS) if c != ("model.num_classes", None)])
def test_the_constructors_accept_a_value_inside_the_rule(key, value):
    # The rule is checked before any weight exists: no need to fill 60M of them, but for split placement, which
    # moves its columns to their devices (a meta tensor cannot be copied).
    with contextlib.nullcontext() if key == "model.placement" else torch.device("meta"):
        for construct in CONSTRUCTORS[key]:
            construct(value)


@pytest.mark.parametrize(("key", "value"), cases(False, CONSTRUCTORS))
def test_the_constructors_refuse_a_value_outside_the_rule_in_the_hydra_checks_words(key, value):
    (said,) = said_of(key, value, [RULES[key].problem(value)])  # the text problems() reports for the config
    for construct in CONSTRUCTORS[key]:
        with pytest.raises(ValueError) as error:
            construct(value)
        assert said in str(error.value)


FLOATS = sorted(key for key, (allowed, _) in EDGES.items() if any(isinstance(v, float) for v in allowed))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("key", FLOATS)
def test_a_float_that_is_not_finite_is_refused_naming_the_key_and_the_range(composed, key, value):
    found = problems_with(composed, key, float(value))
    assert any(problem.startswith(f"{key}={float(value)}: must be finite and ") for problem in found), found
    for build in CONSTRUCTORS.get(key, []):
        with pytest.raises(ValueError, match=f"{key}={float(value)}: must be finite and "):
            build(float(value))


@pytest.mark.parametrize(
    ("interval", "said", "holds_0", "holds_1"),
    [
        (Interval(0, 1, low_open=True, high_open=True), "in (0, 1)", False, False),
        (Interval(0, 1, high_open=True), "in [0, 1)", True, False),
        (Interval(0, 1), "in [0, 1]", True, True),
        (Interval(0), "at least 0", True, True),
        (Interval(0, low_open=True), "above 0", False, True),
    ],
)
def test_an_interval_says_which_of_its_ends_it_holds(interval, said, holds_0, holds_1):
    assert str(interval) == said
    assert (0 in interval, 1 in interval) == (holds_0, holds_1)


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        (KeyRule("k", Interval(2)), "at least 2"),
        (
            KeyRule("k", Interval(2), why="two at least", null="as many as"),
            "null (as many as) or at least 2: two at least",
        ),
        (KeyRule("k", ("a", "b", "c")), "a, b or c"),
        (KeyRule("k", ("a", "b"), null="none"), "null (none), a or b"),
    ],
)
def test_a_rule_says_what_it_allows_in_one_phrase_null_first_and_its_reason_last(rule, said):
    assert rule.wanted() == said


def test_a_value_that_is_no_number_is_refused_where_a_number_is_wanted():
    assert RULES["optim.lr"].problem("fast") == f"optim.lr=fast: must be {RULES['optim.lr'].wanted()}"

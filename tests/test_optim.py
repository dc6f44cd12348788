"""Section 5's update rule against torch.optim.SGD, each checked against a hand computation; which parameters
weight decay reaches."""

import pytest
import torch

from alexnet.training.module import AlexNetModule
from alexnet.training.optim import PaperSGD, build_optimizer
from fast_run import SMALL

W0, GRADS = 1.0, [0.5, -0.25, 1.0, 0.75]
MU, WD = 0.9, 0.0005


def run(optimizer_cls, lrs):
    w = torch.nn.Parameter(torch.tensor([W0], dtype=torch.float64))
    opt = optimizer_cls([w], lr=lrs[0], momentum=MU, weight_decay=WD)
    out = []
    for lr, g in zip(lrs, GRADS, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(w.item())
    return out


def paper_by_hand(lrs):
    """v <- 0.9 v - 0.0005 eps w - eps g; w <- w + v."""
    w, v, out = W0, 0.0, []
    for eps, g in zip(lrs, GRADS, strict=True):
        v = MU * v - WD * eps * w - eps * g
        w = w + v
        out.append(w)
    return out


def torch_by_hand(lrs):
    """v <- mu v + (g + wd w); w <- w - lr v."""
    w, v, out = W0, 0.0, []
    for lr, g in zip(lrs, GRADS, strict=True):
        v = MU * v + g + WD * w if out else g + WD * w
        w = w - lr * v
        out.append(w)
    return out


CONSTANT = [0.01] * 4
DROPPED = [0.01, 0.01, 0.001, 0.001]


def test_paper_rule_equals_the_hand_computation():
    assert run(PaperSGD, CONSTANT) == pytest.approx(paper_by_hand(CONSTANT), abs=1e-15)
    assert run(PaperSGD, DROPPED) == pytest.approx(paper_by_hand(DROPPED), abs=1e-15)


def test_torch_rule_equals_its_hand_computation():
    assert run(torch.optim.SGD, DROPPED) == pytest.approx(torch_by_hand(DROPPED), abs=1e-15)


def test_the_rules_agree_while_the_learning_rate_is_constant():
    assert run(PaperSGD, CONSTANT) == pytest.approx(run(torch.optim.SGD, CONSTANT), abs=1e-15)


def test_the_rules_differ_right_after_a_drop():
    paper, torch_rule = run(PaperSGD, DROPPED), run(torch.optim.SGD, DROPPED)
    assert paper[:2] == pytest.approx(torch_rule[:2], abs=1e-15)
    # The paper's velocity still holds steps of size 0.01; torch's is rescaled by the new lr at once.
    assert abs(paper[2] - torch_rule[2]) > 1e-3


def test_build_optimizer_names_the_key_for_an_unknown_rule():
    with pytest.raises(ValueError, match="optim.rule"):
        build_optimizer([("w", torch.nn.Parameter(torch.zeros(1)))], "adam", 0.01, 0.9, 5e-4, False)


def step_with_zero_gradients(rule: str, decay_biases: bool, lr: float = 0.1) -> tuple[float, float]:
    """w = 2, b = 3 after one step in which only weight decay moves anything."""
    layer = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.bias.fill_(3.0)
    optimizer = build_optimizer(layer.named_parameters(), rule, lr, MU, WD, decay_biases)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return layer.weight.item(), layer.bias.item()


@pytest.mark.parametrize("rule", ["paper", "torch"])
@pytest.mark.parametrize("decay_biases", [False, True])
def test_decay_biases_decides_whether_biases_shrink(rule, decay_biases):
    # One step from zero velocity: both rules move a parameter p by -lr * 0.0005 * p.
    weight, bias = step_with_zero_gradients(rule, decay_biases)
    assert weight == pytest.approx(2.0 - 0.1 * WD * 2.0, abs=1e-15)
    assert bias == (pytest.approx(3.0 - 0.1 * WD * 3.0, abs=1e-15) if decay_biases else 3.0)


@pytest.mark.parametrize("decay_biases", [False, True])
def test_the_module_decays_every_weight_and_the_biases_only_when_asked(decay_biases):
    optim = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": WD, "lr_factor": 0.1, "patience": 1}
    module = AlexNetModule(
        {"num_classes": 10, "input_size": SMALL}, {**optim, "max_drops": 3, "decay_biases": decay_biases}
    )
    optimizer = module.configure_optimizers()
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    # Each of the 16 parameters in exactly one group.
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(decay) == 16
    for name, p in module.named_parameters():  # the biases are the 1-d parameters of conv and linear layers
        assert decay[id(p)] == (WD if p.ndim > 1 or decay_biases else 0.0), name


@pytest.mark.parametrize(
    ("lr", "momentum", "weight_decay", "key"),
    [(0.0, MU, WD, "lr"), (0.01, 1.0, WD, "momentum"), (0.01, -0.1, WD, "momentum"), (0.01, MU, -1e-9, "weight_decay")],
)
def test_paper_sgd_refuses_a_rule_that_is_not_the_papers_form(lr, momentum, weight_decay, key):
    with pytest.raises(ValueError, match=rf"^optim\.{key}=[-.e0-9]+: must be "):
        PaperSGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum, weight_decay=weight_decay)


def test_paper_sgd_accepts_no_momentum_and_no_decay():
    PaperSGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01, momentum=0.0, weight_decay=0.0)


@pytest.mark.parametrize("rule", ["paper", "torch"])
def test_both_rules_get_the_configured_momentum_and_name_their_groups_for_the_logs(rule):
    layer = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(
        layer.named_parameters(), rule, lr=0.02, momentum=0.5, weight_decay=0.01, decay_biases=False
    )
    groups = [(g["name"], g["lr"], g["momentum"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [("weights", 0.02, 0.5, 0.01), ("biases", 0.02, 0.5, 0.0)]  # the given values, not the paper's


SCHEDULE = dict(
    rule="paper", lr=0.01, momentum=MU, weight_decay=WD, decay_biases=False, lr_factor=0.1, patience=1, max_drops=3
)


def scheduled(errors, checkpoint=None, **optim):
    """The module's learning rate after each validation error; from `checkpoint`'s schedule when given."""
    module = AlexNetModule({"num_classes": 10, "input_size": SMALL}, SCHEDULE | optim)
    if checkpoint is not None:
        module.on_load_checkpoint(checkpoint)
    optimizer = module.configure_optimizers()
    lrs = []
    for error in errors:
        module.plateau.step(error)
        lrs.append(optimizer.param_groups[0]["lr"])
    return module, lrs


def test_learning_rate_is_divided_by_10_when_val_error_stalls_three_times_at_most(narrow):
    _, lrs = scheduled([0.9, 0.8, 0.7] + [0.7] * 20)
    assert lrs[:4] == [0.01] * 4  # improving, then one epoch of patience
    # Each drop one multiplication by 0.1, exactly: no floor is reached before the third
    assert sorted(set(lrs), reverse=True) == [0.01, 0.01 * 0.1, 0.01 * 0.1 * 0.1, 0.01 * 0.1 * 0.1 * 0.1]
    assert lrs.index(0.01 * 0.1 * 0.1) - lrs.index(0.01 * 0.1) == 2  # patience counted again after a drop


def test_a_rising_validation_error_is_a_stall(narrow):
    assert scheduled([0.5, 0.6, 0.7])[1] == [0.01, 0.01, 0.001]


def test_the_learning_rate_is_divided_by_optim_lr_factor_and_waits_optim_patience(narrow):
    assert scheduled([0.5] * 4, lr_factor=0.5, patience=2)[1] == [0.01, 0.01, 0.01, 0.005]


def test_a_resumed_schedule_goes_on_from_the_checkpoints_patience(narrow):
    module, lrs = scheduled([0.9, 0.8, 0.8])  # one epoch without improvement: the next one drops
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert lrs == [0.01] * 3 and scheduled([0.8], checkpoint)[1] == [0.001]

"""The paper's update rule (Section 5):

    v <- 0.9 v - 0.0005 * eps * w - eps * dL/dw
    w <- w + v

torch.optim.SGD keeps the learning rate outside the velocity (v <- mu v + g + wd w; w <- w - lr v): the two
agree while eps is constant and differ right after eps is divided by 10, when the paper's velocity still
carries steps of the old size.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

from alexnet.base.rules import require


class PaperSGD(Optimizer):
    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4):
        require("optim", lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocities.append(state["velocity"])
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            grads = [p.grad for p in params]
            torch._foreach_mul_(velocities, momentum)
            if decay:
                torch._foreach_add_(velocities, params, alpha=-decay * lr)
            torch._foreach_add_(velocities, grads, alpha=-lr)
            torch._foreach_add_(params, velocities)
        return loss


def param_groups(named_parameters, weight_decay: float, decay_biases: bool) -> list[dict]:
    """Two groups, "weights" and "biases" (always both, so that logs name them the same whatever the setting).
    Section 5's rule decays "weight w"; cuda-convnet and Caffe's bvlc_alexnet decay no biases
    (optim.decay_biases=false); true decays every parameter."""
    weights: list[torch.nn.Parameter] = []
    biases: list[torch.nn.Parameter] = []
    for name, parameter in named_parameters:
        (biases if name.endswith("bias") else weights).append(parameter)
    return [
        {"params": weights, "weight_decay": weight_decay, "name": "weights"},
        {"params": biases, "weight_decay": weight_decay if decay_biases else 0.0, "name": "biases"},
    ]


def build_optimizer(
    named_parameters, rule: str, lr: float, momentum: float, weight_decay: float, decay_biases: bool
) -> Optimizer:
    require("optim", rule=rule)
    groups = param_groups(named_parameters, weight_decay, decay_biases)
    optimizer = PaperSGD if rule == "paper" else torch.optim.SGD
    return optimizer(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)

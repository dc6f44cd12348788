"""Lightning and placement=split (alexnet.network.placement): each column's layers stay on their own device.

Lightning's single-device strategy moves the whole module to one device after `configure_model`, and
moves optimizer state to that device when resuming. This strategy lets that happen, then puts each column
(and its momentum) back on its own device. The batch, the loss and `self.device` stay on devices[0].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

if TYPE_CHECKING:
    from alexnet.training.module import AlexNetModule


class ColumnPlacementStrategy(SingleDeviceStrategy):
    strategy_name = "column_placement"

    def __init__(self, devices: list[str], **kwargs) -> None:
        super().__init__(device=torch.device(devices[0]), **kwargs)
        self.column_devices = [torch.device(d) for d in devices]

    def model_to_device(self) -> None:
        super().model_to_device()
        cast("AlexNetModule", self.lightning_module).net.place()  # the one module it is made for, attached by now

    def load_optimizer_state_dict(self, checkpoint) -> None:
        super().load_optimizer_state_dict(checkpoint)
        for optimizer in self.optimizers:
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        state[key] = value.to(param.device)

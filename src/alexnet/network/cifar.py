"""Figure 1's network: the four-layer CIFAR-10 net of the authors' released cuda-convnet layer files.

The paper does not draw it (Section 3.1 says only "a four-layer convolutional neural network"); footnote 3 and the
caption point at the authors' CIFAR-10 nets. cuda-convnet's `example-layers/layers-19pct.cfg` is the one with
exactly four weighted layers and no normalisation (18pct is the same with within-map normalisation after the first
two pools). docs/paper.md, "Figure 1's network", lists each fact below with its source."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from alexnet.base.rules import require
from alexnet.network.model import ACTIVATIONS

# (name, out channels, std of the initial weights): 5x5 kernels, padding 2 (layers-19pct.cfg; initW in its
# layer-params file). conv1's std is 100x smaller than the others': the raw pixels it sees are ~100x larger.
CONVS = (("conv1", 32, 1e-4), ("conv2", 32, 0.01), ("conv3", 64, 0.01))
FC_STD = 0.01
IMAGE_SIZE = 32
CHANNELS = 3


def pool(kind: type[nn.MaxPool2d] | type[nn.AvgPool2d]) -> nn.Module:
    """3x3 windows at stride 2 that round up, as cuda-convnet's pooling does: 32 -> 16 -> 8 -> 4. (Rounding down,
    PyTorch's default, gives 15 -> 7 -> 3 and a different fc layer.)"""
    return kind(kernel_size=3, stride=2, ceil_mode=True)


def nonlinearity(name: str) -> nn.Module:
    require("model", activation=name)
    return ACTIVATIONS[name]()


class CifarConvNet(nn.Module):
    """conv1 -> max-pool -> act; conv2 -> act -> avg-pool; conv3 -> act -> avg-pool; fc to the classes. The first
    pool comes before its activation, as in the layer file (for ReLU the order does not matter; for tanh it does)."""

    def __init__(self, activation: str = "relu", num_classes: int = 10) -> None:
        super().__init__()
        require("model", num_classes=num_classes)
        (c1, n1, _), (c2, n2, _), (c3, n3, _) = CONVS
        self.features = nn.Sequential(
            OrderedDict(
                [
                    (c1, nn.Conv2d(CHANNELS, n1, 5, padding=2)),
                    ("pool1", pool(nn.MaxPool2d)),
                    ("act1", nonlinearity(activation)),
                    (c2, nn.Conv2d(n1, n2, 5, padding=2)),
                    ("act2", nonlinearity(activation)),
                    ("pool2", pool(nn.AvgPool2d)),
                    (c3, nn.Conv2d(n2, n3, 5, padding=2)),
                    ("act3", nonlinearity(activation)),
                    ("pool3", pool(nn.AvgPool2d)),
                ]
            )
        )
        self.fc = nn.Linear(n3 * 4 * 4, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian weights with each layer's std, zero biases (layers-19pct's params)."""
        stds = {name: std for name, _, std in CONVS} | {"fc": FC_STD}
        layers = dict(self.features.named_children()) | {"fc": self.fc}
        for name, std in stds.items():
            layer = layers[name]
            assert isinstance(layer, nn.Conv2d | nn.Linear) and layer.bias is not None
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(images), 1))

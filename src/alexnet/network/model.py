"""The 2012 network (Section 3.5, Figure 2), with one constructor argument per ablation.

    conv1 96x11x11/4  -> act -> LRN -> pool      55x55 -> 27x27   (sees the whole input)
    conv2 256x5x5 p2  -> act -> LRN -> pool      27x27 -> 13x13   (own column)
    conv3 384x3x3 p1  -> act                     13x13            (sees both columns)
    conv4 384x3x3 p1  -> act                     13x13            (own column)
    conv5 256x3x3 p1  -> act -> pool             13x13 -> 6x6     (own column)
    fc6 4096 -> act -> dropout, fc7 4096 -> act -> dropout        (each half sees both columns)
    fc8 num_classes

With placement="grouped" (the default) both columns live in single layers, one per paper layer, in order
(groups=2 where a column sees only itself). placement="split" is alexnet.network.placement: each column its own
stack of the same layers on its own device. Both placements have the same state_dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alexnet.base.checkpoints import read_checkpoint
from alexnet.base.rules import placement_problem, require
from alexnet.network import placement as placement_module
from alexnet.network.lrn import LocalResponseNorm

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}
# Section 5: "biases in the second, fourth and fifth convolutional layers, as well as in the fully
# connected hidden layers, [initialised] with the constant 1".
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


@dataclass(frozen=True)
class ConvSpec:
    name: str
    out_channels: int  # in the two-column net
    kernel: int
    stride: int
    padding: int
    cross: bool  # sees both columns (or the whole image)
    lrn_pool: bool  # followed by LRN and max-pooling (layers 1 and 2)


CONVS = (
    ConvSpec("conv1", 96, 11, 4, 0, cross=True, lrn_pool=True),
    ConvSpec("conv2", 256, 5, 1, 2, cross=False, lrn_pool=True),
    ConvSpec("conv3", 384, 3, 1, 1, cross=True, lrn_pool=False),
    ConvSpec("conv4", 384, 3, 1, 1, cross=False, lrn_pool=False),
    ConvSpec("conv5", 256, 3, 1, 1, cross=False, lrn_pool=False),
)
FC_WIDTH = 4096


def conv_specs(columns: int, remove_conv: int | None) -> tuple[ConvSpec, ...]:
    """The conv layers of a variant: footnote 2's one-column net halves conv1-conv4 (conv5 stays 256);
    Section 7's depth ablation leaves out one of conv3, conv4, conv5."""
    require("model", remove_conv=remove_conv)
    specs = []
    for spec in CONVS:
        if spec.name == f"conv{remove_conv}":
            continue
        if columns == 1 and spec.name != "conv5":
            spec = ConvSpec(**{**spec.__dict__, "out_channels": spec.out_channels // 2})
        specs.append(spec)
    return tuple(specs)


def feature_size(input_size: int, specs: tuple[ConvSpec, ...], pool_kernel: int) -> int:
    """Side of pool5's output: 6 for the paper's 227 input."""
    size = input_size
    for spec in specs:
        size = (size + 2 * spec.padding - spec.kernel) // spec.stride + 1
        if spec.lrn_pool:
            size = (size - pool_kernel) // 2 + 1
    size = (size - pool_kernel) // 2 + 1
    if size < 1:
        raise ValueError(f"data.crop_size={input_size}: too small for the network (pool5 would be empty)")
    return size


class _Stage(nn.Module):
    """One conv layer with its activation, and LRN + pooling where the paper has them."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module, lrn: nn.Module | None, pool: nn.Module | None):
        super().__init__()
        self.conv, self.act = conv, act
        self.lrn = lrn if lrn is not None else nn.Identity()
        self.pool = pool if pool is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.lrn(self.act(self.conv(x))))


class _Hidden(nn.Module):
    """fc6 or fc7: linear, activation, dropout. Section 4.2 ("paper") keeps the surviving outputs as they are in
    training and multiplies all outputs by 1 - p (0.5) at test time: nn.Dropout's scaling by 1 / (1 - p) in
    training, times 1 - p always. "inverted" is nn.Dropout alone: the same in expectation, but fc7 and fc8 see
    inputs twice as large in training."""

    def __init__(self, fc: nn.Linear, act: nn.Module, dropout: float, scaling: str):
        super().__init__()
        self.fc, self.act = fc, act
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.keep = 1.0 - dropout if scaling == "paper" else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.act(self.fc(x)))
        return h * self.keep if self.keep != 1.0 else h

    def extra_repr(self) -> str:
        return f"keep={self.keep}"


@dataclass(frozen=True)
class LayerSettings:
    """What every layer of one variant shares: the ablation flags, and pool5's side (fc6's input)."""

    activation: str
    lrn: bool
    lrn_convention: str
    pool_kernel: int
    dropout: float
    dropout_scaling: str
    side: int


def make_layers(specs: tuple[ConvSpec, ...], settings: LayerSettings, columns: int, share: int = 1) -> dict:
    """conv1..conv5 (those of the variant), fc6 and fc7, in order.

    share=1: the layers of all columns, each paper layer one module: where a column sees only its own maps
    the convolution is grouped (groups=columns) and the LRN normalises within each column.
    share=2: the layers of one of two columns (split placement): half the kernels and units of each layer; a
    layer that sees both columns takes all the input channels, one that sees its own column half of them."""
    act = ACTIVATIONS[settings.activation]
    layers: dict[str, nn.Module] = {}
    in_channels = 3  # of all columns together
    for i, spec in enumerate(specs):
        own_column_only = not spec.cross
        if share == 1:  # one layer for all columns, grouped where each column sees only its own maps
            inputs, outputs, groups = in_channels, spec.out_channels, columns if own_column_only else 1
        else:  # one column's share of the layer
            inputs = in_channels // share if own_column_only else in_channels
            outputs, groups = spec.out_channels // share, 1
        conv = nn.Conv2d(inputs, outputs, spec.kernel, spec.stride, spec.padding, groups=groups)
        norm = None
        if settings.lrn and spec.lrn_pool:
            norm = LocalResponseNorm(5, 1e-4, 0.75, 2.0, settings.lrn_convention, columns if share == 1 else 1)
        pool = nn.MaxPool2d(settings.pool_kernel, 2) if spec.lrn_pool or i == len(specs) - 1 else None
        layers[spec.name] = _Stage(conv, act(), norm, pool)
        in_channels = spec.out_channels
    width = FC_WIDTH // share
    fc6 = nn.Linear(in_channels * settings.side**2, width)  # (B, 256 * 6 * 6) after pool5
    layers["fc6"] = _Hidden(fc6, act(), settings.dropout, settings.dropout_scaling)
    layers["fc7"] = _Hidden(nn.Linear(FC_WIDTH, width), act(), settings.dropout, settings.dropout_scaling)
    return layers


class AlexNet(nn.Module):
    """Krizhevsky, Sutskever & Hinton (2012). Keyword arguments are the Hydra keys under `model.`."""

    def __init__(
        self,
        num_classes: int = 1000,
        activation: str = "relu",
        lrn: bool = True,
        lrn_convention: str = "paper",
        overlap_pool: bool = True,
        dropout: float = 0.5,
        dropout_scaling: str = "paper",
        columns: int = 2,
        placement: str = "grouped",
        devices: list[str] | tuple[str, ...] | None = None,
        remove_conv: int | None = None,
        input_size: int = 227,
        init: str = "paper",
    ) -> None:
        super().__init__()
        if num_classes is None:  # the config's null: train.py puts the store's count in before building the network
            raise ValueError("num_classes=None: give AlexNet the class count (model.num_classes=null is the store's)")
        require(
            "model",
            num_classes=num_classes,
            activation=activation,
            lrn_convention=lrn_convention,
            dropout=dropout,
            dropout_scaling=dropout_scaling,
            columns=columns,
            placement=placement,
            init=init,
        )
        self.placement, self.columns = placement, columns
        self.specs = conv_specs(columns, remove_conv)
        # The paper's layers in order (conv3, conv4 or conv5 absent in the depth ablation), and those that see
        # both columns (or the whole image) rather than their own column.
        self.layer_names = (*(spec.name for spec in self.specs), "fc6", "fc7")
        self.crossing = {spec.name for spec in self.specs if spec.cross} | {"fc6", "fc7"}
        devices = list(devices or ["cpu", "cpu"])
        problem = placement_problem(placement, columns, devices)
        if problem:
            raise ValueError(problem)
        self.devices = [torch.device(d) for d in devices]
        pool_kernel = 3 if overlap_pool else 2
        settings = LayerSettings(
            activation,
            lrn,
            lrn_convention,
            pool_kernel,
            dropout,
            dropout_scaling,
            side=feature_size(input_size, self.specs, pool_kernel),
        )
        if placement == "grouped":
            for name, layer in make_layers(self.specs, settings, columns).items():
                self.add_module(name, layer)
        else:
            self.column = nn.ModuleList(nn.ModuleDict(make_layers(self.specs, settings, 2, share=2)) for _ in range(2))
            placement_module.keep_grouped_state_dict(self)
        self.fc8 = nn.Linear(FC_WIDTH, num_classes)
        self.reset_parameters(init)
        self.place()

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> AlexNet:
        """The trained network of a train.py checkpoint as a plain module, grouped on one device whatever the
        run's placement, compilation or precision, in eval mode:

            net = AlexNet.from_checkpoint("logs/smoke/baseline/checkpoints/last.ckpt")
            probs = net(images).softmax(dim=1)      # images: (B, 3, 227, 227), mean image subtracted
        """
        checkpoint = read_checkpoint(path, map_location=map_location)
        net = cls(**{**trained_as(checkpoint["hyper_parameters"]["model"]), "placement": "grouped", "devices": None})
        net.load_state_dict(network_state(checkpoint["state_dict"]))
        return net.to(map_location).eval()

    def place(self) -> AlexNet:
        """Put each column on its own device (split placement): after anything moved the whole module."""
        if self.placement == "split":
            placement_module.place(self)
        return self

    @torch.no_grad()
    def reset_parameters(self, init: str = "paper") -> None:
        """Section 5: weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere.
        init="caffe" is bvlc_alexnet's fix for the flat start: bias 0.1, and std 0.005 in fc6 and fc7."""
        for name, module in self.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            layer = next(part for part in name.split(".") if part.startswith(("conv", "fc")))
            std = 0.005 if init == "caffe" and layer in ("fc6", "fc7") else 0.01
            module.weight.normal_(0.0, std)
            assert module.bias is not None  # every layer is made with one
            module.bias.fill_((1.0 if init == "paper" else 0.1) if layer in BIAS_ONE else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, num_classes)
        return self.fc8(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The fc7 activations, (B, 4096), both columns' halves in grouped order: what fc8 sees, and what
        Section 6.1 compares by Euclidean distance to find an image's nearest training images."""
        if self.placement == "split":
            return placement_module.features(self, x)
        for name in self.layer_names:
            if name == "fc6":
                x = torch.flatten(x, 1)  # (B, 256 * 6 * 6), column 0's channels first
            x = getattr(self, name)(x)
        return x


def trained_as(model: dict) -> dict:
    """A checkpoint's `model` hyperparameters as AlexNet's arguments. Checkpoints written before
    model.dropout_scaling existed were trained with nn.Dropout's scaling ("inverted"), not today's default."""
    return {"dropout_scaling": "inverted", **model}


def network_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights from a training checkpoint's state_dict: the keys under "net.", prefix removed.
    Older checkpoints of this project also hold each weight under "step_net." (or "step_net._orig_mod." when
    compiled), a second name for the same tensor: left out."""
    return {key.removeprefix("net."): value for key, value in state_dict.items() if key.startswith("net.")}

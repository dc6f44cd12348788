"""The 2012 network (Section 3.5, Figure 2), with one constructor argument per ablation.

    conv1 96x11x11/4  -> act -> LRN -> pool      55x55 -> 27x27   (sees the whole input)
    conv2 256x5x5 p2  -> act -> LRN -> pool      27x27 -> 13x13   (own column)
    conv3 384x3x3 p1  -> act                     13x13            (sees both columns)
    conv4 384x3x3 p1  -> act                     13x13            (own column)
    conv5 256x3x3 p1  -> act -> pool             13x13 -> 6x6     (own column)
    fc6 4096 -> act -> dropout, fc7 4096 -> act -> dropout        (each half sees both columns)
    fc8 num_classes

With placement="grouped" both columns live in single layers (groups=2 where a column sees only itself).
With placement="split" each column is its own stack of layers on its own device, and activations cross
devices only where the paper's columns talk (conv3, fc6, fc7, fc8). Both placements have the same
state_dict: a split model presents and accepts its weights in the grouped layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alexnet.lrn import CONVENTIONS, LocalResponseNorm

ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}
PLACEMENTS = ("grouped", "split")
# Section 5: "biases in the second, fourth and fifth convolutional layers, as well as in the fully
# connected hidden layers, [initialised] with the constant 1".
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")
INITS = ("paper", "caffe")
DROPOUT_SCALINGS = ("paper", "inverted")


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
    if remove_conv not in (None, 3, 4, 5):
        raise ValueError(f"model.remove_conv must be null, 3, 4 or 5 (a middle conv layer), got {remove_conv!r}")
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
        raise ValueError(f"data.crop_size {input_size} is too small for the network (pool5 would be empty)")
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
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        if lrn_convention not in CONVENTIONS:
            raise ValueError(f"model.lrn_convention must be one of {CONVENTIONS}, got {lrn_convention!r}")
        if columns not in (1, 2):
            raise ValueError(f"model.columns must be 1 or 2, got {columns!r}")
        if placement not in PLACEMENTS:
            raise ValueError(f"model.placement must be one of {PLACEMENTS}, got {placement!r}")
        if placement == "split" and columns != 2:
            raise ValueError("model.placement=split needs model.columns=2: there is one column to place")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout!r}")
        if dropout_scaling not in DROPOUT_SCALINGS:
            raise ValueError(f"model.dropout_scaling must be one of {DROPOUT_SCALINGS}, got {dropout_scaling!r}")
        if init not in INITS:
            raise ValueError(f"model.init must be one of {INITS}, got {init!r}")
        self.placement, self.columns = placement, columns
        self.specs = conv_specs(columns, remove_conv)
        self.devices = [torch.device(d) for d in (devices or ["cpu", "cpu"])]
        if placement == "split" and len(self.devices) != 2:
            raise ValueError(f"model.placement=split needs two model.devices, got {list(devices or [])}")
        pool_kernel = 3 if overlap_pool else 2
        side = feature_size(input_size, self.specs, pool_kernel)

        def hidden(fc: nn.Linear) -> _Hidden:
            return _Hidden(fc, ACTIVATIONS[activation](), dropout, dropout_scaling)

        def build(parts: int, part: int | None) -> dict[str, nn.Module]:
            """The layers of all columns (part=None, grouped) or of column `part` (split into `parts`)."""
            layers: dict[str, nn.Module] = {}
            in_channels = 3
            for i, spec in enumerate(self.specs):
                last = i == len(self.specs) - 1
                groups = 1 if spec.cross or part is not None else columns
                conv_in = in_channels if spec.cross or part is None else in_channels // parts
                conv_out = spec.out_channels if part is None else spec.out_channels // parts
                lrn_groups = columns if part is None else 1  # each column normalises its own kernel maps
                norm = (
                    LocalResponseNorm(5, 1e-4, 0.75, 2.0, lrn_convention, lrn_groups) if lrn and spec.lrn_pool else None
                )
                pool = nn.MaxPool2d(pool_kernel, 2) if spec.lrn_pool or last else None
                conv = nn.Conv2d(conv_in, conv_out, spec.kernel, spec.stride, spec.padding, groups=groups)
                layers[spec.name] = _Stage(conv, ACTIVATIONS[activation](), norm, pool)
                in_channels = spec.out_channels
            width = FC_WIDTH if part is None else FC_WIDTH // parts
            layers["fc6"] = hidden(nn.Linear(in_channels * side * side, width))
            layers["fc7"] = hidden(nn.Linear(FC_WIDTH, width))
            return layers

        if placement == "grouped":
            for name, layer in build(1, None).items():
                self.add_module(name, layer)
        else:
            self.column = nn.ModuleList(nn.ModuleDict(build(2, c)) for c in range(2))
            self.register_state_dict_post_hook(_merge_columns)
            self.register_load_state_dict_pre_hook(_split_columns)
        self.fc8 = nn.Linear(FC_WIDTH, num_classes)
        # Layers whose input is everything so far (the image, or both columns), not their own column.
        self.cross = {spec.name: spec.cross for spec in self.specs} | {"fc6": True, "fc7": True}
        self.reset_parameters(init)
        self.place()

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> AlexNet:
        """The trained network of a train.py checkpoint as a plain module, grouped on one device whatever the
        run's placement, compilation or precision, in eval mode:

            net = AlexNet.from_checkpoint("logs/smoke/baseline/checkpoints/last.ckpt")
            probs = net(images).softmax(dim=1)      # images: (B, 3, 227, 227), mean image subtracted
        """
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        net = cls(**{**trained_as(checkpoint["hyper_parameters"]["model"]), "placement": "grouped", "devices": None})
        net.load_state_dict(network_state(checkpoint["state_dict"]))
        return net.to(map_location).eval()

    def place(self) -> AlexNet:
        """Put each column on its own device (split placement): after anything moved the whole module."""
        if self.placement == "split":
            for column, device in zip(self.column, self.devices, strict=True):
                column.to(device)
            self.fc8.to(self.devices[0])
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
            module.bias.fill_((1.0 if init == "paper" else 0.1) if layer in BIAS_ONE else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, num_classes)
        return self.fc8(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The fc7 activations, (B, 4096), both columns' halves in grouped order: what fc8 sees, and what
        Section 6.1 compares by Euclidean distance to find an image's nearest training images."""
        if self.placement == "grouped":
            for name in self.cross:
                if name == "fc6":
                    x = torch.flatten(x, 1)  # (B, 256 * 6 * 6), column 0's channels first
                x = getattr(self, name)(x)
            return x
        # Split: `h` is the whole activation (before conv1) or one tensor per column.
        h: torch.Tensor | list[torch.Tensor] = x
        for name, cross in self.cross.items():
            if name == "fc6":
                h = [torch.flatten(t, 1) for t in h]
            h = [
                column[name](_gather(h, device) if cross else h[c])
                for c, (column, device) in enumerate(zip(self.column, self.devices, strict=True))
            ]
        return _gather(h, self.devices[0])


def trained_as(model: dict) -> dict:
    """A checkpoint's `model` hyperparameters as AlexNet's arguments. Checkpoints written before
    model.dropout_scaling existed were trained with nn.Dropout's scaling ("inverted"), not today's default."""
    return {"dropout_scaling": "inverted", **model}


def network_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights from a training checkpoint's state_dict: the keys under "net.", prefix removed.
    Older checkpoints of this project also hold each weight under "step_net." (or "step_net._orig_mod." when
    compiled), a second name for the same tensor: left out."""
    return {key.removeprefix("net."): value for key, value in state_dict.items() if key.startswith("net.")}


def _gather(h: torch.Tensor | list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Everything a column that talks to the other sees, on its own device, channels in grouped order."""
    if isinstance(h, torch.Tensor):
        return h.to(device, non_blocking=True)
    return torch.cat([t.to(device, non_blocking=True) for t in h], dim=1)


def _merge_columns(module, state_dict, prefix, local_metadata) -> None:
    # Output channels (rows) of every column layer are column 0's then column 1's in the grouped layout.
    for name, _ in module.column[0].named_parameters():
        part0 = state_dict.pop(f"{prefix}column.0.{name}")
        part1 = state_dict.pop(f"{prefix}column.1.{name}")
        state_dict[prefix + name] = torch.cat([part0, part1.to(part0.device)], dim=0)
    fc8 = [key for key in state_dict if key.startswith(prefix + "fc8.")]
    for key in fc8:  # keep the grouped model's key order: features, classifier, fc8
        state_dict[key] = state_dict.pop(key)


def _split_columns(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    for name, _ in module.column[0].named_parameters():
        grouped = f"{prefix}{name}"
        if grouped in state_dict:
            part0, part1 = state_dict.pop(grouped).chunk(2, dim=0)
            state_dict[f"{prefix}column.0.{name}"] = part0
            state_dict[f"{prefix}column.1.{name}"] = part1

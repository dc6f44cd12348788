"""Split placement (Section 3.2): each column its own stack of layers on its own device, as on the paper's two
GPUs; activations cross devices only where the columns talk (conv3, fc6, fc7, fc8). The layers are
alexnet.network.model.make_layers' (one column's share of each); the state_dict is the grouped network's, so a
checkpoint does not depend on where the columns ran. Lightning's side of it: alexnet.training.strategy.
"""

from __future__ import annotations

import torch


def place(net) -> None:
    """Each column on its device, fc8 (and so the output) on the first."""
    for column, device in zip(net.column, net.devices, strict=True):
        column.to(device)
    net.fc8.to(net.devices[0])


def features(net, x: torch.Tensor) -> torch.Tensor:
    """fc7's output of a split network, (B, 4096), on the first device, columns in grouped order."""
    h: torch.Tensor | list[torch.Tensor] = x  # the whole activation (before conv1), or one tensor per column
    for name in net.layer_names:
        if name == "fc6":
            h = [torch.flatten(t, 1) for t in h]
        h = [
            column[name](gather(h, device) if name in net.crossing else h[c])
            for c, (column, device) in enumerate(zip(net.column, net.devices, strict=True))
        ]
    return gather(h, net.devices[0])


def gather(h: torch.Tensor | list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Everything a layer that sees both columns gets, on its own device, channels in grouped order."""
    if isinstance(h, torch.Tensor):
        return h.to(device, non_blocking=True)
    return torch.cat([t.to(device, non_blocking=True) for t in h], dim=1)


def keep_grouped_state_dict(net) -> None:
    """The split network presents and accepts its weights in the grouped layout: each layer's output channels
    (rows) are column 0's, then column 1's."""
    net.register_state_dict_post_hook(_merge_columns)
    net.register_load_state_dict_pre_hook(_split_columns)


def _merge_columns(module, state_dict, prefix, local_metadata) -> None:
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

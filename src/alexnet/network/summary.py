"""A per-layer table of the network: output shape, parameters, forward FLOPs per image, device."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from alexnet.network.model import AlexNet


def layer_rows(model: AlexNet, input_size: int) -> list[dict]:
    """One row per paper layer (conv1..conv5, fc6..fc8), measured with a forward pass of one image."""
    names = [*model.layer_names, "fc8"]
    shapes: dict[str, list[torch.Size]] = {}
    split = model.placement == "split"
    hooks = []
    for name in names:
        paths = [f"column.{c}.{name}" for c in range(2)] if split and name != "fc8" else [name]
        for path in paths:
            hooks.append(
                model.get_submodule(path).register_forward_hook(
                    lambda m, i, o, name=name: shapes.setdefault(name, []).append(o.shape)
                )
            )
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(
            torch.zeros(
                1, 3, input_size, input_size, device=model.devices[0] if split else next(model.parameters()).device
            )
        )
    for hook in hooks:
        hook.remove()
    flops = counter.get_flop_counts()
    rows = []
    for name in names:
        params = [p for n, p in model.named_parameters() if name in n.split(".")]
        outputs = shapes[name]
        channels = sum(s[1] for s in outputs)
        shape = (channels, *outputs[0][2:])
        if split and name != "fc8":
            layer_flops = sum(sum(flops.get(f"AlexNet.column.{c}.{name}", {}).values()) for c in range(2))
        else:
            layer_flops = sum(flops.get(f"AlexNet.{name}", {}).values())
        rows.append(
            {
                "layer": name,
                "output": "x".join(str(d) for d in shape),
                "params": sum(p.numel() for p in params),
                "flops": layer_flops,
                "device": ", ".join(sorted({str(p.device) for p in params})),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'layer':<6} {'output':>12} {'params':>12} {'GFLOPs':>8}  device", "-" * 52]
    for r in rows:
        lines.append(f"{r['layer']:<6} {r['output']:>12} {r['params']:>12,} {r['flops'] / 1e9:>8.3f}  {r['device']}")
    lines.append("-" * 52)
    total_params, total_flops = sum(r["params"] for r in rows), sum(r["flops"] for r in rows)
    lines.append(f"{'total':<6} {'':>12} {total_params:>12,} {total_flops / 1e9:>8.3f}  (forward, per image)")
    return "\n".join(lines)

"""Each convolution of the paper net as the grouped placement runs it (one convolution: all kernels, grouped
where the columns do not talk) against the split placement (two convolutions of half the kernels each),
forward + backward, side by side: where model_step.py's grouped / split ratio comes from.

    python benchmarks/conv_halves.py                         # CPU, batch 128
    python benchmarks/conv_halves.py --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from alexnet.base.runtime import keep_freed_memory
from alexnet.network.model import conv_specs

INPUT = {"conv1": (3, 227), "conv2": (96, 27), "conv3": (256, 13), "conv4": (384, 13), "conv5": (384, 13)}


def timed(function, sync) -> float:
    sync()
    start = time.perf_counter()
    function()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    print(f"device={device} batch={args.batch_size} steps={args.steps} (forward + backward, medians)")
    print("| layer | kind | one convolution ms | two halves ms | one / two |")
    print("|---|---|---:|---:|---:|")
    for spec in conv_specs(columns=2, remove_conv=None):
        channels, side = INPUT[spec.name]
        x = torch.randn(args.batch_size, channels, side, side, device=device).contiguous(
            memory_format=torch.channels_last
        )
        groups = 1 if spec.cross else 2
        weight = torch.randn(spec.out_channels, channels // groups, spec.kernel, spec.kernel, device=device)
        halves = [w.clone().requires_grad_() for w in weight.chunk(2)]
        weight.requires_grad_()
        inputs = [x, x] if spec.cross else [t.contiguous(memory_format=torch.channels_last) for t in x.chunk(2, 1)]
        for t in (x, *inputs):
            t.requires_grad_(spec.name != "conv1")  # conv1's input is the image: no gradient, as in training

        def one(weight=weight, x=x, groups=groups, spec=spec):
            F.conv2d(x, weight, stride=spec.stride, padding=spec.padding, groups=groups).sum().backward()

        def two(halves=halves, inputs=inputs, spec=spec):
            sum(
                F.conv2d(t, w, stride=spec.stride, padding=spec.padding).sum()
                for t, w in zip(inputs, halves, strict=True)
            ).backward()

        one(), two()  # warm-up: allocator, algorithm choice
        times = {"one": [], "two": []}
        for _ in range(args.steps):
            times["one"].append(timed(one, sync))
            times["two"].append(timed(two, sync))
        a, b = (1000 * statistics.median(times[k]) for k in ("one", "two"))
        kind = "sees both columns" if spec.cross else "grouped (2 columns)"
        print(f"| {spec.name} | {kind} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()

"""Training-step throughput of the network variants, measured side by side in one run.

    python benchmarks/model_step.py                 # CPU, batch 128, fp32 and bf16 autocast
    python benchmarks/model_step.py --device cuda --steps 30 --compile

Reports images/s per variant and precision (median over steps, all rows interleaved step by step so that
a noisy machine slows them alike), the share of the paper net's step that LRN costs, with this LRN and with
torch.nn.LocalResponseNorm, grouped against two separate columns, bf16 against fp32, and (--compile) the
paper net under torch.compile.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn

from alexnet.base.runtime import keep_freed_memory
from alexnet.network.lrn import LocalResponseNorm
from alexnet.network.model import AlexNet

PAPER = "paper net, this LRN (grouped)"
SPLIT = "paper net, naive two columns on one device (split)"
COMPILED = "paper net, torch.compile"


def with_torch_lrn(model: AlexNet) -> AlexNet:
    """The same net with torch's LocalResponseNorm in place of ours (code convention, same cost)."""
    for stage in (model.conv1, model.conv2):
        ours: LocalResponseNorm = stage.lrn
        stage.lrn = nn.LocalResponseNorm(ours.size, ours.alpha_sum * ours.size, ours.beta, ours.k)
    return model


def variants(num_classes: int, device: torch.device) -> dict[str, nn.Module]:
    return {
        PAPER: AlexNet(num_classes=num_classes),
        "paper net, torch LRN": with_torch_lrn(AlexNet(num_classes=num_classes)),
        "paper net, no LRN": AlexNet(num_classes=num_classes, lrn=False),
        "torchvision.models.alexnet": torchvision.models.alexnet(num_classes=num_classes),
        SPLIT: AlexNet(num_classes=num_classes, placement="split", devices=[device, device]),
    }


def step_time(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool
) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):  # as precision=bf16-mixed does
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    parser.add_argument("--compile", action="store_true", help="add the paper net under torch.compile")
    parser.add_argument(
        "--compile-only", action="store_true", help="with --compile: only the eager and compiled paper net"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as train.py does on the CPU
    torch.manual_seed(0)
    models = variants(args.num_classes, device)
    if args.compile and args.compile_only:
        models = {PAPER: models[PAPER]}
    if args.compile:
        models[COMPILED] = torch.compile(AlexNet(num_classes=args.num_classes))
    # Weights channels_last on a GPU, as the gpu trainer's runtime.channels_last does (the CPU trainer leaves them).
    weights = torch.channels_last if device.type == "cuda" else torch.preserve_format
    models = {name: model.to(device, memory_format=weights).train() for name, model in models.items()}
    optimizers = {
        n: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for n, m in models.items()
    }
    # channels_last, as the augmentation hands batches to the network (it is also faster on the CPU).
    x = (torch.randn(args.batch_size, 3, 227, 227, device=device) * 50).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    rows = [(name, precision) for precision in args.precision.split(",") for name in models]
    inputs = {name: x[:, :, :224, :224] if "torchvision" in name else x for name in models}
    for name, precision in rows:  # warm-up: allocator, cuDNN plans, compilation
        for _ in range(2 if name == COMPILED else 1):
            step_time(models[name], optimizers[name], inputs[name], y, precision == "bf16")
    times: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    for _ in range(args.steps):
        for name, precision in rows:
            times[name, precision].append(
                step_time(models[name], optimizers[name], inputs[name], y, precision == "bf16")
            )
    rate = {row: args.batch_size / statistics.median(t) for row, t in times.items()}
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    gpu = f" gpu={torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(
        f"device={device}{gpu} batch={args.batch_size} steps={args.steps} threads={threads} torch={torch.__version__}"
    )
    first = args.precision.split(",")[0]
    base = rate[PAPER, first]
    print(f"| {'variant':52} | precision | images/s | vs paper net {first} |")
    print(f"|{'-' * 54}|-----------|---------:|---------:|")
    for (name, precision), r in rate.items():
        print(f"| {name:52} | {precision:9} | {r:8.1f} | {r / base:7.2f}x |")
    for precision in args.precision.split(","):
        if args.compile:
            print(f"{precision}: compiled / eager paper net: {rate[COMPILED, precision] / rate[PAPER, precision]:.2f}x")
        if args.compile_only:
            continue
        no_lrn = 1 / rate["paper net, no LRN", precision]
        for name in (PAPER, "paper net, torch LRN"):
            share = (1 / rate[name, precision] - no_lrn) / (1 / rate[name, precision])
            print(f"{precision}: LRN share of the step, {name.split(', ')[1]}: {100 * share:.1f}%")
        print(f"{precision}: grouped / naive split: {rate[PAPER, precision] / rate[SPLIT, precision]:.2f}x")
    if {"fp32", "bf16"} <= set(args.precision.split(",")):
        print(f"paper net bf16 / fp32: {rate[PAPER, 'bf16'] / rate[PAPER, 'fp32']:.2f}x")


if __name__ == "__main__":
    main()

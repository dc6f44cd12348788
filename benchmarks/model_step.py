"""Training-step throughput of the network variants, measured side by side in one run.

    python benchmarks/model_step.py                 # CPU, batch 128
    python benchmarks/model_step.py --device cuda --batch-size 128 --steps 30

Reports images/s per variant (median over steps, variants interleaved round by round so that a noisy
machine slows them alike) and the share of the paper net's step that LRN costs, with this LRN and with
torch.nn.LocalResponseNorm.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn

from alexnet.lrn import LocalResponseNorm
from alexnet.model import AlexNet
from alexnet.runtime import keep_freed_memory


def with_torch_lrn(model: AlexNet) -> AlexNet:
    """The same net with torch's LocalResponseNorm in place of ours (code convention, same cost)."""
    for stage in (model.conv1, model.conv2):
        ours: LocalResponseNorm = stage.lrn
        stage.lrn = nn.LocalResponseNorm(ours.size, ours.alpha_sum * ours.size, ours.beta, ours.k)
    return model


def variants(num_classes: int, device: torch.device) -> dict[str, nn.Module]:
    return {
        "paper net, this LRN (grouped)": AlexNet(num_classes=num_classes),
        "paper net, torch LRN": with_torch_lrn(AlexNet(num_classes=num_classes)),
        "paper net, no LRN": AlexNet(num_classes=num_classes, lrn=False),
        "torchvision.models.alexnet": torchvision.models.alexnet(num_classes=num_classes),
        "paper net, naive two columns on one device (split)": AlexNet(
            num_classes=num_classes, placement="split", devices=[device, device]
        ),
    }


def step_time(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as train.py does on the CPU
    torch.manual_seed(0)
    models = {name: model.to(device).train() for name, model in variants(args.num_classes, device).items()}
    optimizers = {
        n: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for n, m in models.items()
    }
    # channels_last, as the augmentation hands batches to the network (it is also faster on the CPU).
    x = (torch.randn(args.batch_size, 3, 227, 227, device=device) * 50).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    for name, model in models.items():  # warm-up: allocator, cuDNN plans
        step_time(model, optimizers[name], x[:, :, :224, :224] if "torchvision" in name else x, y)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):
        for name, model in models.items():
            inputs = x[:, :, :224, :224] if "torchvision" in name else x
            times[name].append(step_time(model, optimizers[name], inputs, y))
    rate = {name: args.batch_size / statistics.median(t) for name, t in times.items()}
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"device={device} batch={args.batch_size} steps={args.steps} threads={threads} torch={torch.__version__}")
    print(f"| {'variant':52} | images/s | vs paper net |")
    print(f"|{'-' * 54}|---------:|-------------:|")
    base = rate["paper net, this LRN (grouped)"]
    for name, r in rate.items():
        print(f"| {name:52} | {r:8.1f} | {r / base:11.2f}x |")
    no_lrn = 1 / rate["paper net, no LRN"]
    for name in ("paper net, this LRN (grouped)", "paper net, torch LRN"):
        share = (1 / rate[name] - no_lrn) / (1 / rate[name])
        print(f"LRN share of the step, {name.split(', ')[1]}: {100 * share:.1f}%")
    split = rate["paper net, naive two columns on one device (split)"]
    print(f"grouped / naive split: {base / split:.2f}x")


if __name__ == "__main__":
    main()

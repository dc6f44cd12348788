"""What Lightning costs per training step: this project's LightningModule under a Trainer against a plain
PyTorch loop, on the same model, the same batch (already in memory), side by side in one run.

    python benchmarks/lightning_overhead.py                  # CPU, batch 32
    python benchmarks/lightning_overhead.py --device cuda --batch-size 128 --steps 50

Per-step times are taken between consecutive step ends (the first steps are warm-up), medians reported.
The Lightning side includes what a real run does every step: top-1/top-5 metric updates and logging.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from alexnet.base.runtime import keep_freed_memory
from alexnet.training.module import AlexNetModule
from alexnet.training.optim import build_optimizer

OPTIM = {
    "rule": "paper",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "decay_biases": False,
    "lr_factor": 0.1,
    "patience": 5,
    "max_drops": 3,
}


class SameBatch(Dataset):
    def __init__(self, batch, steps):
        self.batch, self.steps = batch, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.batch


class StepTimes(L.Callback):
    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def timed_trainer(device: str, steps: int, timer: StepTimes, precision: str = "32-true") -> L.Trainer:
    """A Trainer that only trains, for `steps` steps, timing each with `timer`: nothing else to measure."""
    return L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        benchmark=device == "cuda",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )


def lightning_steps(batch, steps: int, device: str) -> list[float]:
    torch.manual_seed(0)
    module = AlexNetModule({"num_classes": 1000}, OPTIM, channels_last=True)
    timer = StepTimes()
    timed_trainer(device, steps, timer).fit(module, DataLoader(SameBatch(batch, steps), batch_size=None))
    return [b - a for a, b in itertools.pairwise(timer.ends)]


def plain_steps(batch, steps: int, device: str) -> list[float]:
    torch.manual_seed(0)
    net = AlexNetModule({"num_classes": 1000}, OPTIM, channels_last=True).net.to(device)
    # The same parameter groups as the module's configure_optimizers: weights decayed, biases not.
    optimizer = build_optimizer(
        net.named_parameters(), "paper", OPTIM["lr"], OPTIM["momentum"], OPTIM["weight_decay"], OPTIM["decay_biases"]
    )
    images, labels = (t.to(device) for t in batch)
    ends = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(ends)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.device == "cpu":
        keep_freed_memory()
    images = (torch.randn(args.batch_size, 3, 227, 227) * 50).contiguous(memory_format=torch.channels_last)
    batch = (images, torch.randint(0, 1000, (args.batch_size,)))
    times = {"lightning": [], "plain": []}
    for _ in range(args.rounds):
        times["plain"] += plain_steps(batch, args.steps, args.device)[2:]
        times["lightning"] += lightning_steps(batch, args.steps, args.device)[2:]
    plain, lightning = statistics.median(times["plain"]), statistics.median(times["lightning"])
    print(f"device={args.device} batch={args.batch_size} steps={args.steps}x{args.rounds} (medians, warm-up dropped)")
    print("| loop | ms/step | images/s |")
    print("|---|---:|---:|")
    print(f"| plain PyTorch | {1000 * plain:.1f} | {args.batch_size / plain:.1f} |")
    print(f"| Lightning (AlexNetModule + Trainer) | {1000 * lightning:.1f} | {args.batch_size / lightning:.1f} |")
    print(f"Lightning / plain step time: {lightning / plain:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()

"""One training epoch of Figure 1's net on CIFAR-10: the project's run (ClassifierModule under a Trainer, on
CIFAR10DataModule's in-memory batches) against a plain PyTorch loop over the very same tensors and batch order,
side by side in one run, and the project's epoch without channels_last (conf/figure1.yaml's runtime.channels_last).

    python benchmarks/figure1_epoch.py --root DIR                  # CPU: 2 rounds of one epoch each
    python benchmarks/figure1_epoch.py --root DIR --curve 5        # also: both trained 5 epochs from one seed
    python benchmarks/figure1_epoch.py --root DIR --device cuda
    python benchmarks/figure1_epoch.py --synthetic --device cuda   # random images of CIFAR-10's sizes (gpu.sh)

DIR is CIFAR-10 in any form alexnet.data.cifar reads. Reports each loop's training images/s (the median over
rounds, the two interleaved so a noisy machine slows them alike) and their ratio; the project's must be at least
0.9 of the plain loop's. With --curve, the per-epoch training errors of both, which must agree: the plain loop
is the independent reference that the project's curve is not a bug of its own.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
import torch
import torch.nn.functional as F

from alexnet.base.runtime import keep_freed_memory
from alexnet.data.cifar_datamodule import CIFAR10DataModule
from alexnet.training.classifier import ClassifierModule

MODEL = {"_target_": "alexnet.network.cifar.CifarConvNet", "activation": "relu", "num_classes": 10}


def fresh_module(activation: str, lr: float, seed: int, channels_last: bool = True) -> ClassifierModule:
    L.seed_everything(seed, verbose=False)
    return ClassifierModule({**MODEL, "activation": activation}, lr=lr, momentum=0.9, channels_last=channels_last)


class EpochTimes(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.errors: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)
        self.errors.append(float(trainer.callback_metrics["train/top1_err"]))


def project(
    datamodule: CIFAR10DataModule, device: str, epochs: int, activation: str, lr: float, seed: int, channels_last=True
):
    """(seconds per epoch, training error per epoch) of the project's module under a Trainer, as src/figure1.py
    runs it but without the per-epoch test pass (this measures training)."""
    module = fresh_module(activation, lr, seed, channels_last)
    timer = EpochTimes()
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule)
    return timer.seconds, timer.errors


def plain(datamodule: CIFAR10DataModule, device: str, epochs: int, activation: str, lr: float, seed: int):
    """The same in plain PyTorch: the same network and initial weights, the same batches in the same order,
    torch.optim.SGD, the error counted over the epoch's batches as they are trained on."""
    net = fresh_module(activation, lr, seed).net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    seconds, errors = [], []
    for epoch in range(epochs):
        batches = datamodule.train_dataloader()
        batches.order = lambda e=epoch: _order(datamodule, e)
        start, wrong, seen = time.perf_counter(), torch.zeros((), device=device), 0
        for images, labels in batches:
            logits = net(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            wrong += (logits.argmax(dim=1) != labels).sum()
            seen += len(labels)
        errors.append(float(wrong) / seen)
        seconds.append(time.perf_counter() - start)
    return seconds, errors


def synthetic(train: int, test: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "train_images": torch.randn(train, 3, 32, 32, generator=generator) * 60,
        "train_labels": torch.randint(0, 10, (train,), generator=generator),
        "test_images": torch.randn(test, 3, 32, 32, generator=generator) * 60,
        "test_labels": torch.randint(0, 10, (test,), generator=generator),
    }


def _order(datamodule: CIFAR10DataModule, epoch: int) -> torch.Tensor:
    from alexnet.data.cifar_datamodule import epoch_order

    return epoch_order(len(datamodule.tensors["train_labels"]), datamodule.seed, epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="CIFAR-10 (archive, batches folder or class folders)")
    source.add_argument("--synthetic", action="store_true", help="random images of CIFAR-10's sizes: speed only")
    parser.add_argument("--store", default=None, help="where its arrays are kept (default: a temporary folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--curve", type=int, default=0, help="also train both this many epochs and compare")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--limit", type=int, default=0, help="use the first N training images only (tests)")
    args = parser.parse_args()
    if args.device == "cpu":
        keep_freed_memory()  # as src/figure1.py does on the CPU
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = CIFAR10DataModule(args.root or "synthetic", args.store or tmp, batch_size=128, seed=0)
        if args.synthetic:
            datamodule.manifest = {"synthetic": True}  # nothing to prepare; setup keeps these tensors
            datamodule.tensors = synthetic(50_000, 10_000)
        else:
            datamodule.prepare_data()
            datamodule.setup()
        if args.limit:
            for key in ("train_images", "train_labels"):
                datamodule.tensors[key] = datamodule.tensors[key][: args.limit]
        datamodule.tensors = {k: v.to(args.device) for k, v in datamodule.tensors.items()}
        images = len(datamodule.tensors["train_labels"])
        times: dict[str, list[float]] = {"plain": [], "project": [], "nchw": []}
        run = (args.device, 1, args.activation, args.lr, 0)
        for _ in range(args.rounds):
            times["plain"] += plain(datamodule, *run)[0]
            times["project"] += project(datamodule, *run)[0]
            times["nchw"] += project(datamodule, *run, channels_last=False)[0]
        rate = {name: images / statistics.median(seconds) for name, seconds in times.items()}
        print(f"device={args.device} threads={torch.get_num_threads()} images={images} batch=128 rounds={args.rounds}")
        print("| loop | s/epoch (median) | images/s |")
        print("|---|---:|---:|")
        labels = {
            "plain": "plain PyTorch loop",
            "project": "project (ClassifierModule + Trainer)",
            "nchw": "project, runtime.channels_last=false",
        }
        for name, label in labels.items():
            print(f"| {label} | {images / rate[name]:.2f} | {rate[name]:.0f} |")
        print(f"project / plain images/s: {rate['project'] / rate['plain']:.3f} (target >= 0.9)")
        print(f"channels_last / NCHW images/s: {rate['project'] / rate['nchw']:.2f}")
        if args.curve:
            ours = project(datamodule, args.device, args.curve, args.activation, args.lr, 0)[1]
            reference = plain(datamodule, args.device, args.curve, args.activation, args.lr, 0)[1]
            print(f"\ntraining error per epoch, {args.activation} lr={args.lr:g} seed 0")
            print("| epoch | project | plain loop |")
            print("|---:|---:|---:|")
            for epoch, (a, b) in enumerate(zip(ours, reference, strict=True), start=1):
                print(f"| {epoch} | {a:.4f} | {b:.4f} |")
            print(f"largest difference: {max(abs(a - b) for a, b in zip(ours, reference, strict=True)):.4f}")


if __name__ == "__main__":
    main()

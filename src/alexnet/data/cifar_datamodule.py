"""CIFAR-10 batches from memory: the whole set (184 MB as the store's uint8, 737 MB as float32 inputs) lives on the
device the network trains on,
and a batch is one index into it, so an epoch is never limited by a loader, on a GPU or on the CPU."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch

from alexnet.base.rules import require
from alexnet.data.cifar import CifarError, load, locate, prepare


class Batches:
    """Batches of (images, labels) from tensors, in the order `order()` gives each time it is iterated (all images
    once; the last batch may be smaller, so every image counts once per epoch)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, order: Callable[[], torch.Tensor]):
        self.images, self.labels, self.batch_size, self.order = images, labels, batch_size, order

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order().to(self.labels.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The training images' order in `epoch`: one permutation per (seed, epoch), so a run repeats itself and an
    epoch's order does not depend on what ran before it."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return torch.randperm(size, generator=generator)


def fetch(root: str) -> None:
    """data.download=true: the official release into `root` by torchvision's downloader (which checks its MD5),
    unless `root` already holds CIFAR-10 in a form this reads. Only when asked: nothing here goes online by itself."""
    try:
        locate(root)
        return
    except CifarError:
        pass
    from torchvision.datasets import CIFAR10

    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        CIFAR10(root, train=True, download=True)
    except (OSError, RuntimeError, ValueError) as error:  # urllib's URLError is an OSError
        raise CifarError(
            f"data.download=true: could not download CIFAR-10 into data.root={root} ({error}); download "
            "cifar-10-python.tar.gz yourself into that folder, or point data.root at a copy you have"
        ) from None


class CIFAR10DataModule(L.LightningDataModule):
    """`root`: CIFAR-10 as a user has it (alexnet.data.cifar), downloaded there first with `download`; `store_dir`:
    where its arrays are kept. The
    validation loader is the 10,000 test images (CIFAR-10 has no other held-out set): each epoch's test error."""

    def __init__(
        self,
        root: str,
        store_dir: str,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        download: bool = False,
    ):
        super().__init__()
        require("data", batch_size=batch_size, eval_batch_size=eval_batch_size)
        self.root, self.store_dir, self.download = root, Path(store_dir), download
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.save_hyperparameters({"root": root, "store_dir": store_dir, "batch_size": batch_size, "seed": seed})
        self.manifest: dict | None = None
        self.tensors: dict[str, torch.Tensor] = {}

    def prepare_data(self) -> None:
        if self.manifest is not None:  # Lightning calls this for fit and again for each test: decode once
            return
        if self.download:
            fetch(self.root)
        self.manifest = prepare(self.root, self.store_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        self.manifest, arrays = load(self.store_dir)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        train = torch.from_numpy(arrays["train_images"]).permute(0, 3, 1, 2).float()
        mean = train.mean(dim=0, keepdim=True)  # the training set's mean image, over raw 0-255 values
        test = torch.from_numpy(arrays["test_images"]).permute(0, 3, 1, 2).float()
        self.tensors = {
            "train_images": (train - mean).contiguous().to(device),
            "train_labels": torch.from_numpy(arrays["train_labels"]).to(device),
            "test_images": (test - mean).contiguous().to(device),
            "test_labels": torch.from_numpy(arrays["test_labels"]).to(device),
        }

    def train_dataloader(self) -> Batches:
        images, labels = self.tensors["train_images"], self.tensors["train_labels"]
        return Batches(images, labels, self.batch_size, lambda: epoch_order(len(labels), self.seed, self._epoch()))

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _test_batches(self) -> Batches:
        labels = self.tensors["test_labels"]
        return Batches(self.tensors["test_images"], labels, self.eval_batch_size, lambda: torch.arange(len(labels)))

    val_dataloader = _test_batches

"""The LightningDataModule: prepare the store once, read uint8 batches from it, augment on the device."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from alexnet.base.rules import crop_problem, require
from alexnet.data import augment
from alexnet.data.layout import discover
from alexnet.data.prepare import prepare
from alexnet.data.sample import SampleSpec, make_sample
from alexnet.data.store import Store, file_digest, images_path


def decode_batch(encoded: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Encoded JPEGs -> uint8 (B, S, S, 3) on `device`, as a raw store's batch would be."""
    from torchvision.io import ImageReadMode, decode_jpeg

    decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    return torch.stack(decoded).permute(0, 2, 3, 1)


class StoreBatches(Dataset):
    """dataset[list of indices] -> (images, int64 labels (B,)): whole batches, so a worker does one sorted
    read from the memory map per batch and nothing per image. Images are uint8 (B, S, S, 3) from a raw
    store, or a list of B encoded JPEGs (uint8 tensors) from a JPEG store, decoded where the batch goes."""

    def __init__(self, store: Store, split: str, slots: np.ndarray, labels: np.ndarray):
        self.slots, self.labels = slots, labels
        self.path = images_path(store.root, split)
        self.jpegs = store.jpeg_reader(split) if store.format == "jpeg" else None
        self._images: np.ndarray | None = None  # opened in each worker, on first use

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        slots = self.slots[np.sort(np.asarray(indices))]
        labels = torch.from_numpy(self.labels[slots].astype(np.int64))
        if self.jpegs is not None:
            return [torch.frombuffer(bytearray(self.jpegs.encoded(s)), dtype=torch.uint8) for s in slots], labels
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(self._images[slots]), labels


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of indices for one process of `world` processes. Training: a fresh permutation per epoch
    (seed + epoch), cut evenly across processes, incomplete batches dropped. Evaluation: every index exactly
    once over all processes (rank r takes r, r + world, ...), so distributed error rates are exact."""

    def __init__(self, size: int, batch_size: int, shuffle: bool, rank: int = 0, world: int = 1, seed: int = 0):
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.rank, self.world, self.seed, self.epoch = rank, world, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at the start of each epoch
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.rank, self.size, self.world)
        order = np.random.default_rng(self.seed + self.epoch).permutation(self.size)
        per_rank = self.size // self.world
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self):
        indices = self._indices()
        stop = len(indices) - len(indices) % self.batch_size if self.shuffle else len(indices)
        for start in range(0, stop, self.batch_size):
            yield indices[start : start + self.batch_size].tolist()

    def __len__(self) -> int:
        if self.shuffle:
            return (self.size // self.world) // self.batch_size
        return math.ceil(len(range(self.rank, self.size, self.world)) / self.batch_size)


class ImageNetDataModule(L.LightningDataModule):
    """ILSVRC-2012 (or the sample set) as the paper feeds it. Keyword arguments are the keys under `data.`."""

    def __init__(
        self,
        root: str,
        store_dir: str,
        store_format: str = "raw",
        image_size: int = 256,
        crop_size: int = 227,
        crops_flips: bool = True,
        pca_lighting: float = 0.1,
        mean_subtraction: bool = True,
        val_crops: int = 1,
        batch_size: int = 128,
        eval_batch_size: int = 128,
        num_workers: int = 8,
        prepare_workers: int | None = None,
        strict: bool = False,
        sample: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # Absolute, so that a checkpoint names its data wherever eval.py or a resumed run is started from.
        root, store_dir = os.path.abspath(root), os.path.abspath(store_dir)
        # In every checkpoint: eval.py reads the run's data settings from it. Taken from this frame's arguments, not
        # by Lightning from the caller's frame, which finds nothing once __init__ is wrapped (mutation testing wraps
        # every function).
        self.save_hyperparameters({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        require(
            "data",
            store_format=store_format,
            image_size=image_size,
            crop_size=crop_size,
            pca_lighting=pca_lighting,
            val_crops=val_crops,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            prepare_workers=prepare_workers,
        )
        problem = crop_problem(crop_size, image_size)
        if problem:
            raise ValueError(problem)
        self.root, self.store_dir, self.store_format = Path(root), Path(store_dir), store_format
        self.image_size, self.crop_size = image_size, crop_size
        self.crops_flips, self.pca_lighting, self.mean_subtraction = crops_flips, pca_lighting, mean_subtraction
        self.val_crops = val_crops
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.prepare_workers, self.strict = num_workers, prepare_workers, strict
        self.sample = SampleSpec(**sample) if sample else None
        self.seed = seed
        self.store: Store | None = None
        self._store_identity: dict | None = None
        self._device_tensors: dict[torch.device, tuple[torch.Tensor, ...]] = {}  # mean, eigval, eigvec

    def store_complete(self) -> bool:
        return (self.store_dir / "manifest.json").is_file()  # written last (alexnet.data.prepare)

    def check_source(self) -> None:
        """Fail within seconds, not after building a trainer, when there is neither a store nor a source."""
        if self.sample is None and not self.store_complete() and not self.root.is_dir():
            discover(self.root)  # raises LayoutError saying where data.root should point

    def prepare_data(self) -> None:
        if self.sample is not None and not self.store_complete():  # a complete store needs no source
            make_sample(self.root, self.sample)
        prepare(
            self.root,
            self.store_dir,
            self.image_size,
            self.prepare_workers,
            self.strict,
            store_format=self.store_format,
            sample=dataclasses.asdict(self.sample) if self.sample is not None else None,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.store is None:
            self.store = Store.open(self.store_dir)

    @property
    def opened(self) -> Store:
        """The store, for callers past setup()."""
        assert self.store is not None, "setup() first"
        return self.store

    def store_identity(self) -> dict:
        """The store's manifest checksum (which covers every file's) and source; the manifest of a large store is
        megabytes, so it is hashed once."""
        assert self.store is not None, "setup() first"
        if self._store_identity is None:
            self._store_identity = {
                "manifest_xxh3": file_digest(self.store.root / "manifest.json"),
                "source": self.store.manifest["source"],
                "wnids": self.store.manifest["wnids"],  # which classes, in which order: eval.py checks them
            }
            if "upgraded_from" in self.store.manifest:  # the same images and labels, under an earlier manifest
                self._store_identity["earlier_manifest_xxh3"] = self.store.manifest["upgraded_from"]["manifest_xxh3"]
        return self._store_identity

    def state_dict(self) -> dict:
        """In every checkpoint: the store it was trained on, which a resumed run's must be (alexnet.training.resume)."""
        return {"store": self.store_identity()} if self.store is not None else {}

    @property
    def num_classes(self) -> int:
        assert self.store is not None, "setup() first"
        return self.store.num_classes

    def _loader(self, split: str, train: bool) -> DataLoader:
        assert self.store is not None, "setup() first"
        labels = self.store.labels(split)
        slots = np.flatnonzero(labels >= 0)  # skipped files are never read
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = ShardedBatchSampler(
            len(slots), self.batch_size if train else self.eval_batch_size, train, rank, world, self.seed
        )
        # Lightning sets the sampler's epoch only after it has made the first iterator, and worker processes
        # prefetch from the sampler as soon as it is made: a run resumed at epoch 2 would train its first epoch
        # on an earlier epoch's order. The epoch Lightning will set (processed epochs; `current_epoch` lags
        # behind it until training starts) is set here first.
        # ignored: Lightning types the progress's tracker as its base class; the fit loop's counts processed epochs
        epoch = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0  # type: ignore[attr-defined]
        sampler.set_epoch(epoch)
        return DataLoader(
            StoreBatches(self.store, split, slots, labels),
            sampler=sampler,
            batch_size=None,  # the sampler yields whole batches
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available() and self.store.format == "raw",  # JPEGs go to the decoder
            persistent_workers=self.num_workers > 0,
            prefetch_factor=4 if self.num_workers > 0 else None,
            # Its own generator for the workers' seeds (nothing random happens in a worker): drawn from the
            # global one, they would shift the dropout and augmentation draws of a resumed run, whose first
            # loader is made before alexnet.training.callbacks.ResumeState restores the global generators.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def _statistics_on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Mean image and PCA on the batch's device, moved there once."""
        if device not in self._device_tensors:
            assert self.store is not None
            self._device_tensors[device] = tuple(
                torch.from_numpy(np.ascontiguousarray(a)).to(device)
                for a in (self.store.mean, self.store.eigval, self.store.eigvec)
            )
        return self._device_tensors[device]

    def augment(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        mean: torch.Tensor | None
        mean, eigval, eigvec = self._statistics_on(images.device)
        mean = mean if self.mean_subtraction else None
        if training:
            return augment.train_batch(
                images, mean, eigval, eigvec, self.crop_size, self.crops_flips, self.pca_lighting
            )
        return augment.eval_batch(images, mean, self.crop_size, ten_crop=self.val_crops == 10)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """A JPEG store's batch: decoded straight onto the device the batch goes to (nvJPEG on a GPU)."""
        images, labels = batch
        if not isinstance(images, list):
            return batch
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return decode_batch(images, device), labels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.augment(images, training), labels

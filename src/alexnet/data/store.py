"""The prepared store, written and read in one place.

    store_dir/
      manifest.json        written last and atomically: a store without it is incomplete
      progress.json        chunks already written (resuming), removed when complete
      train_images.npy     (N, S, S, 3) uint8, S = data.image_size (256): the central SxS after the
      val_images.npy         shorter side was scaled to S, in RGB
      train_labels.npy     (N,) int16, the sorted-WNID class index; -1 marks a skipped (unreadable) file
      val_labels.npy
      mean.npy             (S, S, 3) float32, per-pixel mean of the training images, 0-255 scale
      pca.json             eigenvalues and eigenvectors of the RGB covariance, pixels in [0, 1]

Raw uint8 was chosen over JPEG for the loader: reading a raw image is a memory copy, which keeps CPU
work per image near zero (docs/data.md has the measurements and the sizes on disk).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STORE_VERSION = 1
SPLITS = ("train", "val")


def images_path(store_dir: Path, split: str) -> Path:
    return store_dir / f"{split}_images.npy"


def labels_path(store_dir: Path, split: str) -> Path:
    return store_dir / f"{split}_labels.npy"


class StoreError(RuntimeError):
    """The store is missing, incomplete, or was made with other settings."""


@dataclass(frozen=True)
class Store:
    """A complete store, opened for reading. Images are memory-mapped: opening costs nothing."""

    root: Path
    manifest: dict
    mean: np.ndarray  # (S, S, 3) float32, 0-255
    eigval: np.ndarray  # (3,)
    eigvec: np.ndarray  # (3, 3), columns are eigenvectors

    @classmethod
    def open(cls, store_dir: str | Path) -> Store:
        root = Path(store_dir)
        manifest_file = root / "manifest.json"
        if not manifest_file.is_file():
            raise StoreError(f"No complete store in data.store_dir={root} (no manifest.json): run prepare first.")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("store_version") != STORE_VERSION:
            raise StoreError(
                f"The store in {root} has version {manifest.get('store_version')}, this code reads version "
                f"{STORE_VERSION}: prepare it again into an empty data.store_dir."
            )
        pca = json.loads((root / "pca.json").read_text())
        return cls(
            root,
            manifest,
            np.load(root / "mean.npy"),
            np.asarray(pca["eigval"], dtype=np.float32),
            np.asarray(pca["eigvec"], dtype=np.float32),
        )

    def images(self, split: str) -> np.ndarray:
        return np.load(images_path(self.root, split), mmap_mode="r")

    def labels(self, split: str) -> np.ndarray:
        return np.load(labels_path(self.root, split))

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

"""Tiny CIFAR-10 copies for the tests, in each form users have it: the official python release (its pickled
batches written here as the release lays them out: 3072 values per image, red plane, green, blue, row by row) and a
class-folder tree of image files. Pixels are a function of (split, index), so every test knows what to expect."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

# The release's label order (batches.meta); sorted, it is the same list.
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 32, 32, 3) uint8 images and their labels (cycling over the 10 classes)."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), np.arange(count) % 10


def batch_bytes(pixels: np.ndarray, labels: np.ndarray) -> bytes:
    data = pixels.transpose(0, 3, 1, 2).reshape(len(pixels), 3072)  # HWC -> the release's planes
    return pickle.dumps({b"batch_label": b"test", b"labels": [int(x) for x in labels], b"data": data})


def write_python_release(folder: Path, per_batch: int = 10, archive: bool = False) -> Path:
    """cifar-10-batches-py/ (or, with archive, cifar-10-python.tar.gz) with five training batches of
    `per_batch` images and a test batch of as many. Returns the folder or the archive."""
    train, train_labels = images("train", 5 * per_batch)
    test, test_labels = images("test", per_batch)
    parts = [slice(i * per_batch, (i + 1) * per_batch) for i in range(5)]
    members = {f"data_batch_{i + 1}": batch_bytes(train[part], train_labels[part]) for i, part in enumerate(parts)}
    members["test_batch"] = batch_bytes(test, test_labels)
    members["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072})
    if not archive:
        batches = folder / "cifar-10-batches-py"
        batches.mkdir(parents=True)
        for name, data in members.items():
            (batches / name).write_bytes(data)
        return batches
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_class_folders(root: Path, train_count: int = 50, test_count: int = 10, suffix: str = ".png") -> Path:
    """train/<class>/NNNN<suffix> and test/<class>/NNNN<suffix>, the images of images(); PNG keeps pixels exact."""
    from PIL import Image

    for split, count in (("train", train_count), ("test", test_count)):
        pixels, labels = images(split, count)
        for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
            folder = root / split / NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:04d}{suffix}")
    return root

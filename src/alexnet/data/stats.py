"""The training set's mean image and RGB PCA, from exact integer sums made after the images are written, so that
their bytes do not depend on workers, chunks or the order in which chunks finish."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from alexnet.data.pool import pool_map, progress
from alexnet.data.settings import StoreSettings
from alexnet.data.store import JpegReader, images_path, labels_path, read_jpegs

STATS_BLOCK = 1 << 18  # pixels per float64 block of the statistics (6 MB), whatever the image or chunk size


def _train_reader(store_dir: Path, settings: StoreSettings):
    """read(slots) -> uint8 images of the training split of a store being finished (there is no manifest yet),
    for sorted slots. A raw store is read with positioned reads, not through a memory map, so that the pages read
    do not stay in the reading process's resident set."""
    if settings.jpeg:
        reader = JpegReader(store_dir, "train")
        return lambda slots: read_jpegs(reader, slots)
    path = images_path(store_dir, "train")
    images = np.load(path, mmap_mode="r")
    header, shape = images.offset, images.shape[1:]
    per_image = int(np.prod(shape))
    del images

    def read(slots: np.ndarray) -> np.ndarray:
        first, last = int(slots[0]), int(slots[-1]) + 1
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), (last - first) * per_image, header + first * per_image)
        return np.frombuffer(data, np.uint8).reshape(last - first, *shape)[slots - first]

    return read


@dataclass(frozen=True)
class StatsTask:
    """One range of training slots from `start` for a worker process; `keep` marks those holding an image."""

    store_dir: Path
    settings: StoreSettings
    start: int
    keep: np.ndarray


def _stats_chunk(task: StatsTask) -> tuple[int, tuple]:
    """Sums over one range of training images, as exact integers: of images (for the mean image), of RGB
    values 0-255 and of their products (for the covariance); and the range's number of slots. The images are read
    a few at a time and their pixels summed in float64 blocks of STATS_BLOCK pixels, whose sums are integers below
    2**53 and so exact: a worker holds a few images and one block, never a float64 copy of the chunk, and the sums
    do not depend on how the images are cut into chunks or blocks, nor on the order in which they are added."""
    size = task.settings.image_size
    slots = np.arange(task.start, task.start + len(task.keep))[task.keep]
    image_sum = np.zeros((size, size, 3), np.int64)
    pixel_sum, outer_sum = np.zeros(3, np.int64), np.zeros((3, 3), np.int64)
    if len(slots) == 0:  # a chunk of ignored images only: nothing to open
        return len(task.keep), (image_sum, pixel_sum, outer_sum, 0)
    read = _train_reader(task.store_dir, task.settings)
    per_read = max(1, STATS_BLOCK // (size * size))
    for first in range(0, len(slots), per_read):
        batch = read(slots[first : first + per_read])
        batch_sum = batch.sum(axis=0, dtype=np.int32)  # at most STATS_BLOCK * 255 per element (5x faster than int64)
        image_sum += batch_sum
        pixel_sum += batch_sum.reshape(-1, 3).sum(axis=0, dtype=np.int64)
        pixels = batch.reshape(-1, 3)
        for row in range(0, len(pixels), STATS_BLOCK):
            block = pixels[row : row + STATS_BLOCK].astype(np.float64)
            outer_sum += (block.T @ block).astype(np.int64)
    return len(task.keep), (image_sum, pixel_sum, outer_sum, len(slots) * size * size)


def statistics(store_dir: Path, settings: StoreSettings, workers: int, progress_bar: bool, chunk_size: int = 256):
    """Mean image (0-255) and the RGB covariance's eigen-decomposition (pixels in [0, 1]), largest first.
    Exact integer sums, so the bytes do not depend on workers, chunks or the order in which chunks finish."""
    labels = np.load(labels_path(store_dir, "train"))
    tasks = [
        StatsTask(store_dir, settings, start, labels[start : start + chunk_size] >= 0)
        for start in range(0, len(labels), chunk_size)
    ]
    # Exact integers, added as each chunk comes back (in any order: the sum is the same): the main process holds
    # one mean image's sums, not every chunk's. The products' sums can pass int64's range: Python integers.
    image_sum = np.zeros((settings.image_size, settings.image_size, 3), np.int64)
    pixel_sum, outer_sum, count = [0] * 3, [[0] * 3 for _ in range(3)], 0
    with progress(progress_bar, "mean and PCA", len(labels)) as advance:
        for slots, (images, pixels, outer, n) in pool_map(_stats_chunk, tasks, workers):
            image_sum += images
            pixel_sum = [a + int(b) for a, b in zip(pixel_sum, pixels, strict=True)]
            outer_sum = [
                [a + int(b) for a, b in zip(row, new, strict=True)] for row, new in zip(outer_sum, outer, strict=True)
            ]
            count += n
            advance(slots)
    num_images = int((labels >= 0).sum())
    # The covariance of pixels in [0, 1], (n Q - S S^T) / (n (n - 1) 255^2), computed exactly and rounded once.
    scale = max(count * (count - 1) * 255 * 255, 1)
    covariance = np.array(
        [
            [float(Fraction(count * outer_sum[i][j] - pixel_sum[i] * pixel_sum[j], scale)) for j in range(3)]
            for i in range(3)
        ]
    )
    eigval, eigvec = np.linalg.eigh(covariance)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    eigvec *= np.where(eigvec.sum(axis=0) < 0, -1.0, 1.0)  # a fixed sign per eigenvector
    return image_sum / num_images, eigval, eigvec

"""The prepared store, written and read in one place.

    store_dir/
      manifest.json        written last and atomically: a store without it is incomplete
      progress.json        what an unfinished store is of; progress.jsonl: a line per chunk written (resuming);
                           both removed when complete
      train_images.npy     raw format (data.store_format=raw, the default): (N, S, S, 3) uint8, S =
      val_images.npy         data.image_size (256), the central SxS after the shorter side was scaled to S, RGB
      train_jpeg/, val_jpeg/  jpeg format: the same images as JPEG (quality 90), one file per chunk of
                           consecutive slots: a header of chunk+1 int64 offsets, then the JPEGs back to back
      train_jpeg_index.npy (N, 3) int64 (jpeg format): each slot's chunk file, offset in it, and size
      train_image_digests.npy  raw format: (N,) uint64, the xxh3-64 of each slot's bytes, written with the slot
      train_labels.npy     (N,) int16, the sorted-WNID class index; -1 marks a skipped (unreadable) file
      val_labels.npy
      mean.npy             (S, S, 3) float32, per-pixel mean of the training images, 0-255 scale
      pca.json             eigenvalues and eigenvectors of the RGB covariance, pixels in [0, 1]

manifest.json records what the store was made from (`source`: data.root resolved, and a cheap fingerprint of it
or the sample's spec) and every file's size and xxh3-128 checksum (`files`); the raw images are checked per
slot against the digests file instead, so a changed byte is traced to its image. Opening a store compares the
sizes (cheap); `python src/prepare.py data.store_dir=... verify=true` (alexnet.data.prepare.verify) reads every byte.

Raw uint8 is the default for the loader: reading a raw image is a memory copy, which keeps CPU work per
image near zero. JPEG is 8-10x smaller on disk (22 GB for ILSVRC's training set instead of 252 GB) and is
decoded where the batch goes, on the GPU when there is one (docs/data.md has the measurements).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image

from alexnet.errors import UserError

STORE_VERSION = 2  # 2: the manifest holds the source's fingerprint and every file's checksum
SPLITS = ("train", "val")
FORMATS = ("raw", "jpeg")
JPEG_QUALITY = 90


def progress_path(store_dir: Path) -> Path:
    return store_dir / "progress.json"


def images_path(store_dir: Path, split: str) -> Path:
    return store_dir / f"{split}_images.npy"


def labels_path(store_dir: Path, split: str) -> Path:
    return store_dir / f"{split}_labels.npy"


def image_digests_path(store_dir: Path, split: str) -> Path:
    return store_dir / f"{split}_image_digests.npy"


def image_digest(pixels: np.ndarray) -> int:
    """The xxh3-64 of one slot's bytes, as stored in the digests file."""
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(pixels))


def bytes_digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def file_digest(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def jpeg_chunk_path(store_dir: Path, split: str, chunk: int) -> Path:
    return store_dir / f"{split}_jpeg" / f"{chunk:06d}.bin"


def jpeg_index_path(store_dir: Path, split: str) -> Path:
    return store_dir / f"{split}_jpeg_index.npy"


def encode_jpeg_chunk(images: list[np.ndarray | None]) -> bytes:
    """A chunk file's bytes: len+1 int64 offsets (from the file's start), then each image as JPEG; a skipped
    image (None) takes no bytes."""
    encoded = []
    for pixels in images:
        buffer = io.BytesIO()
        if pixels is not None:
            Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY)
        encoded.append(buffer.getvalue())
    sizes = np.array([len(e) for e in encoded], dtype=np.int64)
    offsets = 8 * (len(encoded) + 1) + np.concatenate([[0], np.cumsum(sizes)])
    return offsets.astype("<i8").tobytes() + b"".join(encoded)


def jpeg_chunk_index(path: Path, chunk: int, count: int) -> np.ndarray:
    """(count, 3) int64: chunk, offset and size of each image of a chunk file, from its header."""
    with open(path, "rb") as f:
        offsets = np.frombuffer(f.read(8 * (count + 1)), dtype="<i8")
    return np.stack([np.full(count, chunk), offsets[:-1], np.diff(offsets)], axis=1)


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def read_jpegs(reader: JpegReader, slots) -> np.ndarray:
    return np.stack([decode_jpeg(reader.encoded(slot)) for slot in slots])


class JpegReader:
    """The encoded images of one split of a JPEG store, by slot: one positioned read per image. Opens
    each chunk file on first use, in the process that reads (a DataLoader worker gets no open files)."""

    def __init__(self, store_dir: Path, split: str) -> None:
        self.store_dir, self.split = Path(store_dir), split
        # Memory-mapped: a reader costs nothing to make (one per statistics chunk, per read() call), and
        # only the rows read are paged in.
        self.index = np.load(jpeg_index_path(self.store_dir, split), mmap_mode="r")
        self._files: dict[int, int] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}

    def __del__(self) -> None:
        for fd in getattr(self, "_files", {}).values():
            os.close(fd)

    def encoded(self, slot: int) -> bytes:
        chunk, offset, size = (int(v) for v in self.index[slot])
        fd = self._files.get(chunk)
        if fd is None:
            fd = self._files[chunk] = os.open(jpeg_chunk_path(self.store_dir, self.split, chunk), os.O_RDONLY)
        return os.pread(fd, size, offset)


class StoreError(UserError, RuntimeError):
    """The store is missing, incomplete, damaged, or was made from another source or with other settings."""


def read_manifest(root: Path) -> dict:
    """The manifest of a complete store of this version."""
    manifest_file = root / "manifest.json"
    if not manifest_file.is_file():
        raise StoreError(f"No complete store in data.store_dir={root} (no manifest.json): run prepare first.")
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("store_version") != STORE_VERSION:
        raise StoreError(
            f"The store in {root} has version {manifest.get('store_version')}, this code reads version "
            f"{STORE_VERSION}: prepare it again into an empty data.store_dir."
        )
    return manifest


def wrong_sizes(root: Path, manifest: dict) -> dict[str, str]:
    """{file: what is wrong} for the store's files that are missing or not of the size they were written with."""
    wrong = {}
    for name, entry in sorted(manifest["files"].items()):
        path = root / name
        size = path.stat().st_size if path.is_file() else None
        if size != entry["size"]:
            found = "missing" if size is None else f"{size:,} bytes"
            wrong[name] = f"{found}, prepared with {entry['size']:,} bytes"
    return wrong


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
        """Opens a complete store after checking every file's size against the manifest (one stat each)."""
        root = Path(store_dir)
        manifest = read_manifest(root)
        wrong = [f"{name}: {what}" for name, what in wrong_sizes(root, manifest).items()]
        if wrong:
            raise StoreError(
                f"The store in data.store_dir={root} is damaged: {'; '.join(wrong[:5])}"
                f"{f' and {len(wrong) - 5} more' if len(wrong) > 5 else ''}. Run `python src/prepare.py "
                f"data.store_dir={root} verify=true` to check every byte, then delete the store and prepare it again."
            )
        pca = json.loads((root / "pca.json").read_text())
        return cls(
            root,
            manifest,
            np.load(root / "mean.npy"),
            np.asarray(pca["eigval"], dtype=np.float32),
            np.asarray(pca["eigvec"], dtype=np.float32),
        )

    @property
    def format(self) -> str:
        return self.manifest["settings"].get("format", "raw")

    def images(self, split: str) -> np.ndarray:
        """The raw format's (N, S, S, 3) uint8 images, memory-mapped."""
        if self.format != "raw":
            raise StoreError(f"The store in {self.root} holds JPEGs: read them with read() or jpeg_reader().")
        return np.load(images_path(self.root, split), mmap_mode="r")

    def jpeg_reader(self, split: str) -> JpegReader:
        return JpegReader(self.root, split)

    def read(self, split: str, slots) -> np.ndarray:
        """(len(slots), S, S, 3) uint8 images, in either format (decoded on the CPU for JPEG)."""
        if self.format == "raw":
            return self.images(split)[np.asarray(slots)]
        return read_jpegs(self.jpeg_reader(split), slots)

    def labels(self, split: str) -> np.ndarray:
        return np.load(labels_path(self.root, split))

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

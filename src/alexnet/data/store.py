"""The prepared store, written and read in one place.

    store_dir/
      manifest.json        written last and atomically: a store without it is incomplete. It holds its own
                           checksum (manifest_xxh3: the xxh3-128 of its canonical JSON without that field)
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
slot against the digests file instead, so a changed byte is traced to its image. Opening a store checks the
manifest against its own checksum, what it says against itself (class count, file list, labels), every small file
by content and the image files by size; `python src/prepare.py data.store_dir=... verify=true`
(alexnet.data.verify.verify) reads every byte.

Raw uint8 is the default for the loader: reading a raw image is a memory copy, which keeps CPU work per
image near zero. JPEG is 8-10x smaller on disk (22 GB for ILSVRC's training set instead of 252 GB) and is
decoded where the batch goes, on the GPU when there is one (docs/data.md has the measurements).
"""

from __future__ import annotations

import io
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image

from alexnet.base.atomic import atomic_write_bytes, json_bytes
from alexnet.base.errors import UserError

# 2: the manifest holds the source's fingerprint and every file's checksum; 3: and its own checksum, and the
# source's identity is its listing (names and sizes), not modification times
STORE_VERSION = 3
UPGRADABLE = (2,)  # versions alexnet.data.upgrade.upgrade brings to this one without decoding an image
MANIFEST_CHECKSUM = "manifest_xxh3"
DIFFERS = "the bytes differ from those prepared (checksum mismatch)"
RESTORE = "Restore the store from a copy, or delete it and prepare it again."
SPLITS = ("train", "val")
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
    # ignored: an ndarray is a buffer; numpy's stubs declare its __buffer__ for Python >= 3.12 only
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(pixels))  # type: ignore[arg-type]


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
    """The encoded images of one split of a JPEG store, by slot: one positioned read per image. Opens chunk
    files on first use, in the process that reads (a DataLoader worker gets no open files), and keeps at most
    `max_open` of them open, the least recently read closed first: ILSVRC's training split is ~5,000 chunk files,
    above the usual limit of 1,024 open files per process."""

    def __init__(self, store_dir: Path, split: str, max_open: int = 64) -> None:
        self.store_dir, self.split, self.max_open = Path(store_dir), split, max_open
        # Memory-mapped: a reader costs nothing to make (one per statistics chunk, per read() call), and
        # only the rows read are paged in.
        self.index = np.load(jpeg_index_path(self.store_dir, split), mmap_mode="r")
        self._files: OrderedDict[int, int] = OrderedDict()  # chunk -> open file, least recently read first

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": OrderedDict()}

    def __del__(self) -> None:
        for fd in getattr(self, "_files", {}).values():
            os.close(fd)

    def _file(self, chunk: int) -> int:
        fd = self._files.get(chunk)
        if fd is not None:
            self._files.move_to_end(chunk)
            return fd
        if len(self._files) >= self.max_open:
            os.close(self._files.popitem(last=False)[1])
        fd = self._files[chunk] = os.open(jpeg_chunk_path(self.store_dir, self.split, chunk), os.O_RDONLY)
        return fd

    def encoded(self, slot: int) -> bytes:
        chunk, offset, size = (int(v) for v in self.index[slot])
        return os.pread(self._file(chunk), size, offset)


class StoreError(UserError, RuntimeError):
    """The store is missing, incomplete, damaged, or was made from another source or with other settings."""


def manifest_path(store_dir: Path) -> Path:
    return Path(store_dir) / "manifest.json"


def _unsigned(manifest: dict) -> dict:
    return {key: value for key, value in manifest.items() if key != MANIFEST_CHECKSUM}


def signed(manifest: dict) -> dict:
    """The manifest with its own checksum: the xxh3-128 of its canonical JSON without the checksum."""
    unsigned = _unsigned(manifest)
    return {**unsigned, MANIFEST_CHECKSUM: bytes_digest(json_bytes(unsigned))}


def manifest_bytes(manifest: dict) -> bytes:
    """The manifest as written: canonical JSON, with its own checksum."""
    return json_bytes(signed(manifest))


def write_manifest(store_dir: Path, manifest: dict) -> dict:
    """One atomic write: the manifest marks the store complete and carries its own checksum, so there is no
    moment at which a complete store lacks it. Returns the manifest as written."""
    atomic_write_bytes(manifest_path(store_dir), manifest_bytes(manifest))
    return signed(manifest)


def load_json(path: Path, data: bytes | None = None):
    """A store's JSON file; bytes that do not parse are a StoreError naming the file."""
    try:
        return json.loads(path.read_bytes() if data is None else data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"{path} is damaged: not readable JSON ({error}). {RESTORE}") from None


def read_manifest(root: Path) -> dict:
    """The manifest of a complete store of this version, checked against its own checksum and against itself."""
    path = manifest_path(root)
    if not path.is_file():
        raise StoreError(f"No complete store in data.store_dir={root} (no manifest.json): run prepare first.")
    data = path.read_bytes()
    manifest = load_json(path, data)
    if not isinstance(manifest, dict):
        raise StoreError(f"{path} is damaged: not a manifest (a JSON object). {RESTORE}")
    version = manifest.get("store_version")
    if MANIFEST_CHECKSUM not in manifest and version in UPGRADABLE:
        raise StoreError(
            f"The store in {root} was written by an earlier version of this code (store version {version}). Upgrade it "
            f"in place, which decodes no image: `python src/prepare.py data.store_dir={root} upgrade=true` (with the "
            "data.root it was made from, to record that data.root's listing)."
        )
    if data != manifest_bytes(manifest):  # a changed value, its checksum, or any byte of the layout around them
        raise StoreError(f"{path} is damaged: its bytes differ from the checksum written with it. {RESTORE}")
    if version != STORE_VERSION:
        raise StoreError(
            f"The store in {root} has version {version}, this code reads version {STORE_VERSION}: prepare it again "
            "into an empty data.store_dir."
        )
    problems = contradictions(manifest)
    if problems:
        raise StoreError(f"{path} contradicts itself: {'; '.join(problems)}. {RESTORE}")
    return manifest


def required_files(manifest: dict) -> dict[str, str]:
    """{file: "small" or "images"} of every file the store needs, from its settings and slot counts."""
    settings, files = manifest["settings"], {"mean.npy": "small", "pca.json": "small"}
    for split in SPLITS:
        files[labels_path(Path(), split).name] = "small"
        if settings.get("format") == "jpeg":
            files[jpeg_index_path(Path(), split).name] = "small"
            for chunk in range(-(-manifest["splits"][split]["slots"] // settings["chunk_size"])):
                files[str(jpeg_chunk_path(Path(), split, chunk))] = "images"
        else:
            files[image_digests_path(Path(), split).name] = "small"
            files[images_path(Path(), split).name] = "images"
    return files


def is_images(entry: dict) -> bool:
    """Whether a manifest entry is an image file (a raw images .npy or a JPEG chunk): checked by size when the
    store is opened, by content in verify. Every other file is small and checked by content at every open."""
    return "image_digests" in entry or "slots" in entry


def contradictions(manifest: dict) -> list[str]:
    """What a manifest says that it contradicts elsewhere (class counts, image counts, its file list)."""
    try:
        problems = []
        classes = (manifest["num_classes"], len(manifest["wnids"]), len(manifest["class_names"]))
        if len(set(classes)) != 1:
            problems.append(f"num_classes {classes[0]}, but {classes[1]} WNIDs and {classes[2]} class names")
        for split in SPLITS:
            info = manifest["splits"][split]
            if info["images"] + len(info["skipped"]) != info["slots"]:
                skipped = len(info["skipped"])
                problems.append(f"{split}: {info['images']} images and {skipped} skipped in {info['slots']} slots")
        files = manifest["files"]
        for name, kind in required_files(manifest).items():
            if name not in files:
                problems.append(f"no entry for {name}, which the store needs")
            elif is_images(files[name]) != (kind == "images") or not (kind == "images" or "xxh3" in files[name]):
                problems.append(f"the entry for {name} is not one of {kind} ({files[name]})")
        return problems
    except (KeyError, TypeError, AttributeError) as error:
        return [f"a key is missing or of the wrong kind ({type(error).__name__}: {error})"]


def damaged_files(root: Path, manifest: dict, progress=lambda n: None) -> dict[str, str]:
    """{file: what is wrong} for the store's files that are missing, not of the size they were written with, or
    (small files) not of the bytes they were written with. Image files are compared by size only here."""
    damaged = {}
    for name, entry in sorted(manifest["files"].items()):
        path = root / name
        size = path.stat().st_size if path.is_file() else None
        if size != entry["size"]:
            found = "missing" if size is None else f"{size:,} bytes"
            damaged[name] = f"{found}, prepared with {entry['size']:,} bytes"
        elif not is_images(entry):
            if file_digest(path) != entry["xxh3"]:
                damaged[name] = DIFFERS
            progress(entry["size"])
    return damaged


def labels_problems(root: Path, manifest: dict) -> list[str]:
    """What the labels files (checked by checksum already) contradict in the manifest: their count, their range,
    the skipped files."""
    problems = []
    for split in SPLITS:
        labels, info = np.load(labels_path(root, split)), manifest["splits"][split]
        name = labels_path(Path(), split).name
        if labels.shape != (info["slots"],):
            problems.append(f"{name} holds {labels.shape} labels for {info['slots']} slots")
        elif labels.min(initial=0) < -1 or labels.max(initial=0) >= manifest["num_classes"]:
            problems.append(f"{name} has labels outside -1..{manifest['num_classes'] - 1}")
        elif int((labels < 0).sum()) != len(info["skipped"]):
            marked = int((labels < 0).sum())
            problems.append(f"{name} marks {marked} slots skipped, the manifest lists {len(info['skipped'])}")
    return problems


def store_problems(root: Path, manifest: dict) -> list[str]:
    """What opening a store finds wrong with its files (missing, of another size, small ones by content), then
    with its labels (read only once they are as prepared)."""
    problems = [f"{name}: {what}" for name, what in damaged_files(root, manifest).items()]
    return problems or labels_problems(root, manifest)


@dataclass(frozen=True)
class Store:
    """A complete store, opened for reading. Images are memory-mapped: opening reads only the small files."""

    root: Path
    manifest: dict
    mean: np.ndarray  # (S, S, 3) float32, 0-255
    eigval: np.ndarray  # (3,)
    eigvec: np.ndarray  # (3, 3), columns are eigenvectors

    @classmethod
    def open(cls, store_dir: str | Path) -> Store:
        """Opens a complete store after checking its manifest, the bytes of every small file (labels, mean, PCA,
        indices, digests: megabytes at ImageNet scale) and the size of every image file."""
        root = Path(store_dir)
        manifest = read_manifest(root)
        problems = store_problems(root, manifest)
        if problems:
            raise StoreError(
                f"The store in data.store_dir={root} is damaged: {'; '.join(problems[:5])}"
                f"{f' and {len(problems) - 5} more' if len(problems) > 5 else ''}. Run `python src/prepare.py "
                f"data.store_dir={root} verify=true` to check every byte, then restore the store from a copy or "
                "delete it and prepare it again."
            )
        pca = load_json(root / "pca.json")
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

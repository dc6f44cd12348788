"""CIFAR-10, Figure 1's data: read once from the form a user has it in, kept as arrays, fed from memory.

The forms read (data.root names the file or folder, or a folder holding it):
- the official python release, `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/` (five training
  batches and a test batch of 10,000 pickled images each, as torchvision.datasets.CIFAR10 downloads it);
- a class-folder tree of image files, `train/<class>/*` and `test/<class>/*` (.jpg, .jpeg or .png).

Both become the same arrays: uint8 (N, 32, 32, 3) images and int64 labels, classes in sorted order, in a store
folder (`arrays.npz` and `manifest.json`, written atomically) with what they were made from and a fingerprint of
their bytes, so a result names the very images it was measured on. Input as the authors' code fed it
(docs/paper.md, "Figure 1's network"): raw pixel values (0-255) minus the training set's mean image.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import xxhash

from alexnet.base.atomic import atomic_file, atomic_write_json, exclusive
from alexnet.base.errors import UserError

SIDE = 32
CLASSES = 10
ARCHIVE = "cifar-10-python.tar.gz"
BATCHES = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
STORE_FORMAT = "cifar10-arrays-1"  # changes when the store's files change; an older store is refused
SPLITS = ("train", "test")


class CifarError(UserError, ValueError):
    """CIFAR-10 input that cannot be read as the data set: the message names the file or folder."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # int64 (N,), indices into the sorted class names


@dataclass(frozen=True)
class Dataset:
    classes: tuple[str, ...]
    train: Split
    test: Split
    form: str  # "python-archive" | "python-folder" | "class-folders"
    source: Path  # the file or folder read


def locate(root: str | Path) -> tuple[str, Path]:
    """(form, path) of the CIFAR-10 copy at `root`: the archive, the batches folder, or a class-folder tree,
    given as itself or as the folder holding it."""
    root = Path(root).expanduser().resolve()
    if root.is_file():
        return "python-archive", root
    if not root.is_dir():
        raise CifarError(
            f"data.root={root}: no such file or folder. Give CIFAR-10's {ARCHIVE}, its extracted {BATCHES}/, or a "
            "folder with train/<class>/ and test/<class>/ image folders (docs/figure1/README.md says how to get them), "
            "or add data.download=true to fetch the release there."
        )
    for form, path in (("python-archive", root / ARCHIVE), ("python-folder", root / BATCHES), ("python-folder", root)):
        if path.exists() and (form == "python-archive" or (path / META).exists()):
            return form, path
    if (root / "train").is_dir() or (root / "test").is_dir():
        return "class-folders", root
    raise CifarError(
        f"data.root={root}: holds neither {ARCHIVE}, nor {BATCHES}/ (with {META}), nor train/ and test/ class "
        "folders. Point data.root at one of them, or add data.download=true to fetch the release there."
    )


def read(root: str | Path) -> Dataset:
    form, path = locate(root)
    if form == "class-folders":
        return read_class_folders(path)
    members = _archive_members(path) if form == "python-archive" else _folder_members(path)
    return _from_batches(members, form, path)


# --- the official python release --------------------------------------------------------------------------


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the batches' dicts of lists, bytes and numpy arrays, and nothing else: a pickle can run any
    code it names, and a file that claims to be a CIFAR batch should not get to."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only arrays")
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        batch = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # a damaged file fails in many ways inside pickle: each is this one error
        raise CifarError(f"{where}: not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise CifarError(f"{where}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def _archive_members(path: Path) -> dict[str, tuple[bytes, str]]:
    """{batch name: (its bytes, where it is)} from the official tar.gz. The whole gzip stream is read first, so that
    its checksum (at the end, past the tar's own end marker) catches a damaged archive instead of wrong pixels."""
    try:
        with gzip.open(path) as f:
            data = f.read()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            found = {}
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and (name in TRAIN_BATCHES or name in (TEST_BATCH, META)):
                    file = tar.extractfile(member)
                    assert file is not None  # a regular file's member always has its data
                    found[name] = (file.read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise CifarError(f"{path}: not a readable CIFAR-10 archive ({error}); download it again") from None
    return found


def _folder_members(path: Path) -> dict[str, tuple[bytes, str]]:
    return {
        name: ((path / name).read_bytes(), str(path / name))
        for name in (*TRAIN_BATCHES, TEST_BATCH, META)
        if (path / name).is_file()
    }


def _from_batches(members: dict[str, tuple[bytes, str]], form: str, path: Path) -> Dataset:
    missing = [name for name in (META, *TRAIN_BATCHES, TEST_BATCH) if name not in members]
    if missing:
        raise CifarError(f"{path}: lacks {', '.join(missing)} of the official release; download it again")
    meta = _unpickle(*members[META])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if len(names) != CLASSES or len(set(names)) != CLASSES:
        raise CifarError(f"{members[META][1]}: label_names must be 10 distinct names, found {names}")
    classes = tuple(sorted(names))
    rank = np.array([classes.index(n) for n in names])  # the release's label -> its place in sorted order

    def split(batch_names: tuple[str, ...]) -> Split:
        parts = [_batch_arrays(*members[name]) for name in batch_names]
        images = np.concatenate([p[0] for p in parts])
        return Split(images, rank[np.concatenate([p[1] for p in parts])].astype(np.int64))

    return Dataset(classes, split(TRAIN_BATCHES), split((TEST_BATCH,)), form, path)


def _batch_arrays(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images as (N, 32, 32, 3) and its labels; the release stores each image as 1024 red, 1024
    green, then 1024 blue values, row by row."""
    batch = _unpickle(data, where)
    images, labels = batch.get("data"), batch.get("labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise CifarError(f"{where}: 'data' must be a uint8 array of shape (N, 3072)")
    if images.shape[1] != 3 * SIDE * SIDE:
        raise CifarError(f"{where}: 'data' rows hold {images.shape[1]} values, not 3072 (32x32 RGB)")
    try:
        labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.zeros(0, dtype=np.int64)  # not numbers: refused below, with the rest
    if labels.shape != (len(images),) or (labels.size and (labels.min() < 0 or labels.max() >= CLASSES)):
        raise CifarError(f"{where}: 'labels' must be one label in 0..9 for each of the {len(images)} images")
    return images.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1).copy(), labels


# --- a class-folder tree ------------------------------------------------------------------------------------


def read_class_folders(root: Path) -> Dataset:
    listed = {split: _class_files(root / split) for split in SPLITS}
    train_classes, test_classes = set(listed["train"]), set(listed["test"])
    if train_classes != test_classes:
        only = sorted(train_classes - test_classes), sorted(test_classes - train_classes)
        raise CifarError(
            f"{root}: train/ and test/ have different classes (only in train/: {only[0] or 'none'}; only in "
            f"test/: {only[1] or 'none'}); both splits need the same class folders"
        )
    classes = tuple(sorted(train_classes))
    splits = {split: _decode_split(listed[split], classes) for split in SPLITS}
    return Dataset(classes, splits["train"], splits["test"], "class-folders", root)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class: its image files, sorted} under `folder`; every class folder must hold at least one image."""
    if not folder.is_dir():
        raise CifarError(f"{folder}: no such folder; a class-folder tree has train/<class>/ and test/<class>/")
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p)):
        files = sorted(
            p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _hidden(p)
        )
        if not files:
            raise CifarError(f"{sub}: holds no {'/'.join(IMAGE_SUFFIXES)} image; remove the folder or add its images")
        found[sub.name] = files
    if len(found) < 2:
        raise CifarError(f"{folder}: needs a folder per class (at least 2), found {len(found)}")
    return found


def _hidden(path: Path) -> bool:
    """.ipynb_checkpoints/, macOS's ._0003.png: not classes, not images."""
    return path.name.startswith(".")


def _class_folders(split: Path) -> list[Path]:
    return sorted(p for p in split.iterdir() if p.is_dir() and not _hidden(p))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _hidden(p))


def _decode_split(files: dict[str, list[Path]], classes: tuple[str, ...]) -> Split:
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    for label, name in enumerate(classes):
        for path in files[name]:
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError, SyntaxError) as error:
                raise CifarError(f"{path}: not a readable image ({error}); replace or remove it") from None
            if pixels.shape != (SIDE, SIDE, 3):
                raise CifarError(f"{path}: is {pixels.shape[1]}x{pixels.shape[0]} pixels; CIFAR-10 images are 32x32")
            images.append(pixels)
            labels.append(label)
    return Split(np.stack(images), np.array(labels, dtype=np.int64))


# --- the store: the arrays once decoded --------------------------------------------------------------------


def fingerprint(dataset: Dataset | dict[str, np.ndarray], classes: tuple[str, ...] | None = None) -> str:
    """xxh3-128 of the class names and every split's pixels and labels, in their order: the same images in the same
    order give the same fingerprint whatever file held them (the release's folder or its archive; class folders
    are read class by class, so they give another), and one changed pixel gives another."""
    arrays = _arrays(dataset) if isinstance(dataset, Dataset) else dataset
    names = dataset.classes if isinstance(dataset, Dataset) else classes
    digest = xxhash.xxh3_128("\n".join(names or ()).encode())
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).data)
    return digest.hexdigest()


def _arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    return {
        "train_images": dataset.train.images,
        "train_labels": dataset.train.labels,
        "test_images": dataset.test.images,
        "test_labels": dataset.test.labels,
    }


def source_listing(form: str, path: Path) -> dict:
    """What the source is, by a stat of each file read (no decoding): a changed file changes it."""
    if form == "class-folders":
        splits = [path / split for split in SPLITS if (path / split).is_dir()]  # a missing one: read() says so
        files = sorted(f for split in splits for folder in _class_folders(split) for f in _image_files(folder))
    elif form == "python-folder":
        files = [path / name for name in (META, *TRAIN_BATCHES, TEST_BATCH) if (path / name).is_file()]
    else:
        files = [path]
    digest = xxhash.xxh3_128()
    for file in files:
        stat = file.stat()
        name = file.relative_to(path) if file != path else file.name
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {"path": str(path), "form": form, "files": len(files), "listing_xxh3": digest.hexdigest()}


def manifest_of(store_dir: Path) -> dict | None:
    path = store_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CifarError(f"{path}: unreadable ({error}); delete {store_dir} to decode the data again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise CifarError(f"{path}: not a {STORE_FORMAT} store; delete {store_dir} to decode the data again")
    return manifest


def prepare(root: str | Path, store_dir: str | Path) -> dict:
    """The store of `root`'s CIFAR-10 in `store_dir`, decoded now if it is not there; returns its manifest. A
    store made from another source, or from files that changed since, is refused."""
    store_dir = Path(store_dir)
    with exclusive(store_dir / ".lock", f"the CIFAR-10 store {store_dir}"):
        form, path = locate(root)
        listing = source_listing(form, path)
        manifest = manifest_of(store_dir)
        if manifest is not None:
            made_from = manifest["source"]
            if made_from["path"] != listing["path"]:
                raise CifarError(
                    f"data.store_dir={store_dir} holds CIFAR-10 decoded from {made_from['path']}, not from "
                    f"data.root={path}: give another data.store_dir (or leave it unset: a folder per source)."
                )
            if made_from != listing:
                raise CifarError(
                    f"data.root={path}: its files changed since data.store_dir={store_dir} was decoded from them "
                    f"({made_from['files']} files then, {listing['files']} now, or other sizes or times): delete "
                    f"{store_dir} to decode them again."
                )
            return manifest
        dataset = read(root)
        arrays = _arrays(dataset)
        with atomic_file(store_dir / "arrays.npz") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stubs take the first keyword for allow_pickle
        manifest = {
            "format": STORE_FORMAT,
            "source": listing,
            "classes": list(dataset.classes),
            "splits": {split: {"images": len(arrays[f"{split}_labels"])} for split in SPLITS},
            "fingerprint_xxh3": fingerprint(dataset),
        }
        atomic_write_json(store_dir / "manifest.json", manifest)  # last: a store without it is unfinished
        return manifest


def load(store_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest and the arrays of a prepared store, checked against the fingerprint it was written with."""
    store_dir = Path(store_dir)
    manifest = manifest_of(store_dir)
    if manifest is None:
        raise CifarError(f"data.store_dir={store_dir}: no CIFAR-10 store here (run with data.root set to prepare one)")
    path = store_dir / "arrays.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as error:
        raise CifarError(f"{path}: unreadable ({error}); delete {store_dir} to decode the data again") from None
    if fingerprint(arrays, tuple(manifest["classes"])) != manifest["fingerprint_xxh3"]:
        raise CifarError(f"{path}: its bytes differ from those it was written with; delete {store_dir} to decode again")
    return manifest, arrays

"""Preparation, once: decode, scale the shorter side to 256, take the central 256x256 (Section 2), write
the store; then the training set's mean image and RGB PCA; then the manifest.

Work is cut into chunks of consecutive images. A chunk is recorded as done, one line appended to progress.jsonl
(progress.json holds what the unfinished store is of), only after its pixels are flushed to disk, so a run killed
anywhere resumes by redoing the chunks not recorded, and the result is byte-for-byte what an uninterrupted run
writes (each slot's bytes depend only on its file; the statistics are exact integer sums, made at the end).
manifest.json is written last: it is what marks a store complete. Checksums are taken as the bytes are written
(in the worker that writes them), never in a second pass over the store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.base.atomic import atomic_write_bytes, atomic_write_json, exclusive, json_bytes
from alexnet.base.errors import UserError, disk_full
from alexnet.data.augment import centre_offset
from alexnet.data.layout import Layout, LayoutError, discover, open_item, source_fingerprint
from alexnet.data.store import (
    DIFFERS,
    FORMATS,
    JPEG_QUALITY,
    MANIFEST_CHECKSUM,
    RESTORE,
    SPLITS,
    STORE_VERSION,
    UPGRADABLE,
    JpegReader,
    StoreError,
    bytes_digest,
    contradictions,
    damaged_files,
    encode_jpeg_chunk,
    file_digest,
    image_digest,
    image_digests_path,
    images_path,
    is_images,
    jpeg_chunk_index,
    jpeg_chunk_path,
    jpeg_index_path,
    labels_path,
    load_json,
    manifest_path,
    progress_path,
    read_jpegs,
    read_manifest,
    store_problems,
    write_manifest,
)

RESIZE = "shorter side to image_size (PIL bilinear, antialiased; JPEG draft decoding), central crop"


class UnreadableImageError(UserError, RuntimeError):
    """An image could not be decoded and data.strict is set."""


def load_image(path, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 RGB from a file name or binary file object: the shorter side scaled to `size`,
    the central square cropped.
    CMYK, grayscale, palette and PNG files (whatever their suffix) all come out as RGB."""
    with Image.open(path) as image:
        # For JPEGs, let libjpeg decode at 1/2, 1/4 or 1/8 scale while both sides stay >= size:
        # most ImageNet files are 2x larger than needed, and decoding dominates the cost.
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        width, height = image.size
        # torchvision.transforms.Resize(size)'s arithmetic: the longer side truncated, not rounded.
        if width <= height:
            new_size = (size, int(size * height / width))
        else:
            new_size = (int(size * width / height), size)
        image = image.resize(new_size, Image.Resampling.BILINEAR)
        left, top = centre_offset(new_size[0], size), centre_offset(new_size[1], size)
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8)


JPEG_BYTES_ESTIMATE = 40_000  # per 256x256 image at quality 90, with room to spare (ILSVRC averages ~17 KB)


def _settings(image_size: int, store_format: str, chunk_size: int) -> dict:
    if store_format not in FORMATS:
        raise ValueError(f"data.store_format must be one of {FORMATS}, got {store_format!r}")
    settings = {"image_size": image_size, "resize": RESIZE}
    if store_format == "jpeg":  # the chunk size places images in files, so a resumed run must keep it
        settings.update(format="jpeg", quality=JPEG_QUALITY, chunk_size=chunk_size)
    return settings


def _listing(layout: Layout) -> str:
    """Every item and its label: what an unfinished store's slots were assigned from."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for path, label in getattr(layout, split):
            digest.update(f"{split}\t{path}\t{label}\n".encode())
    return digest.hexdigest()


def source_of(root: str | Path, sample: dict | None = None) -> dict | None:
    """What a store is made from: data.root resolved, and what tells its content apart (the sample's spec, which
    makes the same bytes every time, or the cheap fingerprint of the files). None when data.root is not there:
    a complete store is then used as it is (a training node may hold the store and not the dataset)."""
    root = Path(root)
    if sample is not None:
        return {"root": str(root.resolve()), "sample": dict(sample)}
    if not root.is_dir():
        return None
    return {"root": str(root.resolve()), **source_fingerprint(root)}


def _identity(source: dict) -> dict | str | None:
    return source.get("sample") or source.get("fingerprint")


def describe_source(source: dict) -> str:
    what = f"sample {source['sample']}" if "sample" in source else f"fingerprint {source.get('fingerprint')}"
    return f"{source['root']} ({what})"


def _process_chunk(task: tuple) -> tuple[str, int, int, list[dict], dict | None]:
    root, store_dir, split, chunk, start, items, settings, strict = task
    store_dir, image_size = Path(store_dir), settings["image_size"]
    pixels: list[np.ndarray | None] = []
    skipped = []
    for slot, (path, member) in enumerate(items, start):
        try:
            pixels.append(load_image(open_item(Path(root), path, member), image_size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            if strict:
                raise UnreadableImageError(
                    f"Cannot read {Path(root) / path}: {error}. Remove or replace the file, or set "
                    "data.strict=false to skip unreadable files and list them in the manifest."
                ) from error
            pixels.append(None)
            skipped.append({"slot": slot, "path": path, "reason": f"{type(error).__name__}: {error}"})
    if settings.get("format") == "jpeg":
        data = encode_jpeg_chunk(pixels)
        atomic_write_bytes(jpeg_chunk_path(store_dir, split, chunk), data)
        checksum = {"size": len(data), "xxh3": bytes_digest(data), "slots": [start, start + len(items)]}
        return split, chunk, len(items), skipped, checksum
    images = np.load(images_path(store_dir, split), mmap_mode="r+")
    digests = np.load(image_digests_path(store_dir, split), mmap_mode="r+")
    for slot, image in enumerate(pixels, start):
        images[slot] = 0 if image is None else image
        digests[slot] = image_digest(images[slot])
    images.flush()
    digests.flush()
    return split, chunk, len(items), skipped, None


STATS_BLOCK = 1 << 18  # pixels per float64 block of the statistics (6 MB), whatever the image or chunk size


def _train_reader(store_dir: Path, settings: dict):
    """read(slots) -> uint8 images of the training split of a store being finished (there is no manifest yet),
    for sorted slots. A raw store is read with positioned reads, not through a memory map, so that the pages read
    do not stay in the reading process's resident set."""
    if settings.get("format") == "jpeg":
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


def _stats_chunk(task: tuple) -> tuple[int, int, tuple]:
    """Sums over one range of training images, as exact integers: of images (for the mean image), of RGB
    values 0-255 and of their products (for the covariance). The images are read a few at a time and their pixels
    summed in float64 blocks of STATS_BLOCK pixels, whose sums are integers below 2**53 and so exact: a worker
    holds a few images and one block, never a float64 copy of the chunk, and the sums do not depend on how the
    images are cut into chunks or blocks, nor on the order in which they are added."""
    store_dir, settings, start, keep = task
    size = settings["image_size"]
    slots = np.arange(start, start + len(keep))[keep]
    image_sum = np.zeros((size, size, 3), np.int64)
    pixel_sum, outer_sum = np.zeros(3, np.int64), np.zeros((3, 3), np.int64)
    read = _train_reader(Path(store_dir), settings) if len(slots) else None
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
    return start, len(keep), (image_sum, pixel_sum, outer_sum, len(slots) * size * size)


def _pool_map(function, tasks: list, workers: int) -> Iterator:
    if workers <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(function, tasks)


def _allocate(path: Path, shape: tuple[int, ...], dtype=np.uint8) -> None:
    """Create the .npy and reserve its blocks now: a full disk fails here with a clear error, not later as a
    crash (SIGBUS) in the middle of writing through a memory map."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = array.offset + array.nbytes
    del array
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise OSError(error.errno, error.strerror, str(path)) from error


def _store_bytes(layout: Layout, settings: dict) -> int:
    """About what the finished store takes on disk."""
    per_image = JPEG_BYTES_ESTIMATE if settings.get("format") == "jpeg" else settings["image_size"] ** 2 * 3
    return (len(layout.train) + len(layout.val)) * (per_image + 16) + settings["image_size"] ** 2 * 12


def _on_disk(store_dir: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in store_dir.rglob("*") if p.is_file())


def _check_space(store_dir: Path, layout: Layout, settings: dict) -> None:
    needed = _store_bytes(layout, settings)
    free = shutil.disk_usage(store_dir).free
    if needed > free:
        raise StoreError(
            f"data.store_dir={store_dir} has {free / 1e9:.1f} GB free; the store needs {needed / 1e9:.1f} GB. "
            "Free space or point data.store_dir at a larger disk."
        )


HEADER = ("listing", "source", "settings")  # progress.json: what the unfinished store is of, written once


def progress_log_path(store_dir: Path) -> Path:
    """One line per chunk written, appended as each is done: its split, number, skipped files and checksum."""
    return store_dir / "progress.jsonl"


def _record_chunk(store_dir: Path, record: dict) -> None:
    """Appends a chunk's line to the log and syncs it: a chunk is done once its line is on disk. The cost does not
    grow with the chunks already done (rewriting one file of them all would: quadratic over a store)."""
    path = progress_log_path(store_dir)
    line = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies, as to any new file
        try:
            while line:  # a full disk can cut a write short: the next write then says so
                line = line[os.write(fd, line) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        if error.filename is None:  # os.write and os.fsync name no file
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def _read_progress(store_dir: Path, repair: bool = False) -> dict:
    """progress.json's header with the chunks done: those the log lists, in the order they were done. A last line
    that a kill cut short (and whatever follows a line that does not parse) is no record: its chunk is done again,
    and with `repair` the log is cut back to its last whole line, so that the next record starts a line of its own."""
    progress = json.loads(progress_path(store_dir).read_text())
    progress.setdefault("done", {split: [] for split in SPLITS})  # an unfinished store of an older version held
    progress.setdefault("skipped", {split: [] for split in SPLITS})  # them in progress.json itself
    progress.setdefault("chunks", {split: {} for split in SPLITS})
    log = progress_log_path(store_dir)
    data = log.read_bytes() if log.is_file() else b""
    whole, done = 0, {split: set(progress["done"][split]) for split in SPLITS}
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            break
        whole += len(line)
        split, chunk = record["split"], record["chunk"]
        if chunk in done[split]:
            continue
        done[split].add(chunk)
        progress["done"][split].append(chunk)
        progress["skipped"][split].extend(record["skipped"])
        if record.get("checksum") is not None:
            progress["chunks"][split][str(chunk)] = record["checksum"]
    if repair and whole < len(data):
        os.truncate(log, whole)
    return progress


def _open_progress(store_dir: Path, layout: Layout, settings: dict, source: dict) -> dict:
    progress_file = progress_path(store_dir)
    listing = _listing(layout)
    if progress_file.is_file():
        progress = _read_progress(store_dir, repair=True)
        same_source = "source" in progress and _identity(progress["source"]) == _identity(source)
        if same_source and progress.get("listing") == listing and progress["settings"] == settings:
            return progress
        raise StoreError(
            f"data.store_dir={store_dir} holds an unfinished store of other images or settings "
            f"({describe_source(progress['source']) if 'source' in progress else 'another version'}, "
            f"{progress['settings']}), not of data.root={describe_source(source)}. Delete {store_dir} or choose "
            "another data.store_dir."
        )
    if any(store_dir.iterdir()):
        raise StoreError(f"data.store_dir={store_dir} is not empty and holds no store: choose an empty or new folder.")
    _check_space(store_dir, layout, settings)
    progress = {
        "listing": listing,
        "source": source,
        "settings": settings,
        "done": {split: [] for split in SPLITS},
        "skipped": {split: [] for split in SPLITS},
        "chunks": {split: {} for split in SPLITS},  # jpeg format: each chunk file's size and checksum
    }
    try:
        for split in SPLITS:
            if settings.get("format") == "jpeg":
                jpeg_chunk_path(store_dir, split, 0).parent.mkdir()
            else:
                size, count = settings["image_size"], len(getattr(layout, split))
                _allocate(images_path(store_dir, split), (count, size, size, 3))
                _allocate(image_digests_path(store_dir, split), (count,), np.uint64)
        atomic_write_json(progress_file, {key: progress[key] for key in HEADER})  # the chunks go to the log
    except BaseException:  # a full disk, an interrupt: leave the folder empty, so that a rerun starts afresh
        for path in sorted(store_dir.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        raise
    return progress


def _existing(store_dir: Path, settings: dict, source: dict | None) -> dict | None:
    if not (store_dir / "manifest.json").is_file():
        return None
    try:
        manifest = read_manifest(store_dir)
    except StoreError as error:
        raise StoreError(f"{error} Or choose another data.store_dir.") from None
    found = dict(manifest["settings"])
    found.pop("chunk_size", None)  # how a complete store was cut into files does not matter to its readers
    wanted = {key: value for key, value in settings.items() if key != "chunk_size"}
    if found != wanted:
        raise StoreError(
            f"data.store_dir={store_dir} holds a store made with other settings ({manifest['settings']}; wanted "
            f"{settings}). Delete it or choose another data.store_dir."
        )
    if source is not None:
        _check_source(store_dir, manifest["source"], source)
    return manifest


def _check_source(store_dir: Path, made_from: dict, source: dict) -> None:
    """Refuses a store made from other images than data.root's; says so in one line when data.root is a copy
    (another path, the same listing) of what the store was made from."""
    if _identity(source) != _identity(made_from):
        raise StoreError(
            f"data.store_dir={store_dir} holds a store made from {describe_source(made_from)}, not from "
            f"data.root={describe_source(source)}: another dataset, or an image or class was added, removed, renamed "
            "or resized since. If the store is what you want to train on, train from it as it is with data.root "
            "unset (a data.root that does not exist: the store is then not compared), and check its bytes with "
            "verify=true. Otherwise prepare again: choose another data.store_dir (the default is one folder per "
            f"source and settings), or delete {store_dir}."
        )
    if source["root"] != made_from["root"]:
        print(
            f"data.root={source['root']} lists the same images (names and sizes) as {made_from['root']}, which "
            f"data.store_dir={store_dir} was made from: using the store as it is.",
            file=sys.stderr,
        )


def prepare(
    root: str | Path,
    store_dir: str | Path,
    image_size: int = 256,
    workers: int | None = None,
    strict: bool = False,
    chunk_size: int = 256,
    progress_bar: bool = True,
    store_format: str = "raw",
    sample: dict | None = None,
) -> dict:
    """Prepare the store unless a complete one is there; returns the manifest. `sample`: the spec of the sample
    dataset under root, which then stands for its content."""
    store_dir = Path(store_dir)
    settings = _settings(image_size, store_format, chunk_size)
    source = source_of(root, sample)
    manifest = _existing(store_dir, settings, source)
    if manifest is not None:
        return manifest
    layout = discover(root)
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"Cannot create data.store_dir={store_dir} ({error}): point it at a writable folder."
        ) from error
    if not os.access(store_dir, os.W_OK):
        raise StoreError(f"data.store_dir={store_dir} is not writable: point it at a writable folder.")
    with _store_lock(store_dir):
        manifest = _existing(store_dir, settings, source)
        if manifest is not None:
            return manifest
        try:
            return _prepare(layout, store_dir, settings, source, workers, strict, chunk_size, progress_bar)
        except OSError as error:
            if not disk_full(error):
                raise
            needed = max(_store_bytes(layout, settings) - _on_disk(store_dir), 0)
            raise StoreError(
                f"Not enough disk space for {error.filename or store_dir}: about {needed / 1e6:,.0f} MB more are "
                f"needed to finish the store in data.store_dir={store_dir}. Free that much on its disk (or point "
                "data.store_dir at a larger one) and rerun the same command: preparation resumes from the chunks "
                "already written."
            ) from error


def _store_lock(store_dir: Path):
    """The lock that preparing and upgrading a store hold: beside the folder, so that it is not one of its files."""
    return exclusive(store_dir.with_name(f".{store_dir.name}.lock"), f"data.store_dir={store_dir}")


def upgrade(store_dir: str | Path, root: str | Path | None = None) -> str:
    """Brings a store written by an earlier version of this code to this version in place, decoding nothing, and
    says in one line what it did. Its files are checked first (small ones by content, images by size); the source's
    listing (this version's identity) is recorded from data.root, after checking that data.root holds the items,
    with their labels and in their order, that the store's slots were assigned from; then the manifest is rewritten,
    with its own checksum and the checksum of the manifest it replaces (a run trained on the store resumes on it).
    Without data.root there, no listing is recorded: the store is then used where data.root is unset and refused
    where it is set, until upgraded again with it."""
    store_dir = Path(store_dir)
    path = manifest_path(store_dir)
    if not path.is_file():
        raise StoreError(f"No complete store in data.store_dir={store_dir} (no manifest.json): nothing to upgrade.")
    with _store_lock(store_dir):
        manifest = load_json(path)
        version = manifest.get("store_version") if isinstance(manifest, dict) else None
        if not isinstance(manifest, dict) or version == STORE_VERSION or MANIFEST_CHECKSUM in manifest:
            manifest = read_manifest(store_dir)  # checks it as any open does
            if _identity(manifest["source"]) is not None:
                return f"data.store_dir={store_dir} is a store of version {STORE_VERSION} already: nothing to do."
        elif version not in UPGRADABLE:
            raise StoreError(
                f"The store in {store_dir} has version {version}, which cannot be upgraded to version {STORE_VERSION}: "
                "prepare it again into an empty data.store_dir."
            )
        problems = contradictions(manifest) or store_problems(store_dir, manifest)
        if problems:
            raise StoreError(
                f"The store in {store_dir} is damaged ({'; '.join(problems[:5])}), so it is not upgraded. {RESTORE}"
            )
        source, said = _upgraded_source(manifest["source"], root)
        if version != STORE_VERSION:
            earlier = {"store_version": version, "manifest_xxh3": file_digest(path)}
            manifest = {**manifest, "store_version": STORE_VERSION, "upgraded_from": earlier}
        write_manifest(store_dir, {**manifest, "source": source})
    return f"data.store_dir={store_dir} upgraded to version {STORE_VERSION} (no image decoded): {said}"


def _upgraded_source(made_from: dict, root: str | Path | None) -> tuple[dict, str]:
    """The source as this version records it, and what was recorded, in words."""
    if "sample" in made_from:
        return made_from, "its source is a sample spec, which this version records as before."
    root = Path(root if root is not None else made_from["root"])
    if not root.is_dir():
        return {**made_from, "fingerprint": None}, (
            f"data.root={root} is not there, so its listing is not recorded: the store is used where data.root is "
            "unset, and refused where it is set until upgraded again with it."
        )
    if _listing(discover(root)) != made_from["listing"]:
        raise StoreError(
            f"data.root={root} does not hold the images (names, labels, order) that the store was made from "
            f"({made_from['root']}): not upgraded. Give the data.root it was made from, or none (the store is then "
            "used where data.root is unset)."
        )
    return {**made_from, "root": str(root.resolve()), **source_fingerprint(root)}, (
        f"the listing of data.root={root} (names and sizes) is recorded as its source."
    )


def _prepare(
    layout: Layout,
    store_dir: Path,
    settings: dict,
    source: dict,
    workers: int | None,
    strict: bool,
    chunk_size: int,
    progress_bar: bool,
) -> dict:
    progress = _open_progress(store_dir, layout, settings, source)
    workers = workers or os.cpu_count() or 1

    tasks = []
    for split in SPLITS:
        items, done = getattr(layout, split), set(progress["done"][split])
        for chunk, start in enumerate(range(0, len(items), chunk_size)):
            if chunk not in done:
                batch = [(path, layout.members.get(path)) for path, _ in items[start : start + chunk_size]]
                tasks.append((str(layout.root), str(store_dir), split, chunk, start, batch, settings, strict))
    total = sum(len(task[5]) for task in tasks)
    with _progress(progress_bar, "preparing", total) as advance:
        for split, chunk, count, skipped, checksum in _pool_map(_process_chunk, tasks, workers):
            _record_chunk(store_dir, {"split": split, "chunk": chunk, "skipped": skipped, "checksum": checksum})
            progress["done"][split].append(chunk)
            progress["skipped"][split].extend(skipped)
            if checksum is not None:
                progress["chunks"][split][str(chunk)] = checksum
            advance(count)

    splits, files = {}, {}
    for split in SPLITS:
        items = getattr(layout, split)
        labels = np.array([label for _, label in items], dtype=np.int16)
        skipped = sorted(progress["skipped"][split], key=lambda s: s["slot"])
        labels[[s["slot"] for s in skipped]] = -1
        if split == "train":
            _refuse_classes_without_images(layout, labels, skipped, store_dir)
        files.update(_save_npy(store_dir, labels_path(store_dir, split), labels))
        if settings.get("format") == "jpeg":
            chunks = range(0, len(items), chunk_size)
            index = [
                jpeg_chunk_index(jpeg_chunk_path(store_dir, split, c), c, len(items[start : start + chunk_size]))
                for c, start in enumerate(chunks)
            ]
            files.update(
                _save_npy(store_dir, jpeg_index_path(store_dir, split), np.concatenate(index).astype(np.int64))
            )
            for chunk, checksum in progress["chunks"][split].items():
                files[str(jpeg_chunk_path(store_dir, split, int(chunk)).relative_to(store_dir))] = checksum
        else:
            digests = image_digests_path(store_dir, split)
            files[digests.name] = {"size": digests.stat().st_size, "xxh3": file_digest(digests)}
            images = images_path(store_dir, split)
            files[images.name] = {"size": images.stat().st_size, "image_digests": digests.name}
        splits[split] = {
            "images": int((labels >= 0).sum()),
            "slots": len(items),
            "skipped": [{"path": s["path"], "reason": s["reason"]} for s in skipped],
        }
    mean, eigval, eigvec = _statistics(store_dir, settings, workers, progress_bar)
    files.update(_save_npy(store_dir, store_dir / "mean.npy", mean.astype(np.float32)))
    files.update(
        _save(store_dir, store_dir / "pca.json", json_bytes({"eigval": eigval.tolist(), "eigvec": eigvec.tolist()}))
    )
    manifest = {
        "store_version": STORE_VERSION,
        "settings": settings,
        "source": {**progress["source"], "form": layout.form, "listing": progress["listing"]},
        "num_classes": layout.num_classes,
        "wnids": layout.wnids,
        "class_names": layout.class_names,
        "splits": splits,
        "layout_oddities": layout.oddities,
        "mean_rgb": mean.reshape(-1, 3).mean(axis=0).tolist(),
        "files": dict(sorted(files.items())),
    }
    manifest = write_manifest(store_dir, manifest)
    progress_log_path(store_dir).unlink(missing_ok=True)
    progress_path(store_dir).unlink()
    return manifest


def _refuse_classes_without_images(layout: Layout, labels: np.ndarray, skipped: list[dict], store_dir: Path) -> None:
    """A training class whose every image is undecodable is refused, as an empty class folder is (discover): it
    cannot be learned, and training on it would report its error as the network's."""
    empty = np.flatnonzero(np.bincount(labels[labels >= 0], minlength=layout.num_classes) == 0)
    if len(empty) == 0:
        return
    reasons = {s["path"].rsplit("/", 1)[0]: s["reason"] for s in skipped}
    places = [_class_place(layout, c) for c in empty[:5]]
    named = [f"{place} (e.g. {reasons.get(place, 'no readable image')})" for place in places]
    raise LayoutError(
        f"{len(empty)} training class(es) of {layout.root} hold no image that can be decoded: {'; '.join(named)}. "
        "A class without training images cannot be learned: put readable images in it, or remove it; then delete "
        f"the unfinished store in {store_dir} and prepare again."
    )


def _class_place(layout: Layout, label: int) -> str:
    """Where a class's images lie under data.root: its folder, or its tar inside the training archive."""
    path = next(path for path, c in layout.train if c == label)
    return path.rsplit("/", 1)[0]


def _save(store_dir: Path, path: Path, data: bytes) -> dict[str, dict]:
    """Writes a store file atomically; returns its manifest entry (size and checksum)."""
    atomic_write_bytes(path, data)
    return {str(path.relative_to(store_dir)): {"size": len(data), "xxh3": bytes_digest(data)}}


def _save_npy(store_dir: Path, path: Path, array: np.ndarray) -> dict[str, dict]:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return _save(store_dir, path, buffer.getvalue())


def _statistics(store_dir: Path, settings: dict, workers: int, progress_bar: bool, chunk_size: int = 256):
    """Mean image (0-255) and the RGB covariance's eigen-decomposition (pixels in [0, 1]), largest first.
    Exact integer sums, so the bytes do not depend on workers, chunks or the order in which chunks finish."""
    labels = np.load(labels_path(store_dir, "train"))
    tasks = [
        (str(store_dir), settings, start, labels[start : start + chunk_size] >= 0)
        for start in range(0, len(labels), chunk_size)
    ]
    # Exact integers, added as each chunk comes back (in any order: the sum is the same): the main process holds
    # one mean image's sums, not every chunk's. The products' sums can pass int64's range: Python integers.
    image_sum = np.zeros((settings["image_size"], settings["image_size"], 3), np.int64)
    pixel_sum, outer_sum, count = [0] * 3, [[0] * 3 for _ in range(3)], 0
    with _progress(progress_bar, "mean and PCA", len(labels)) as advance:
        for _, slots, (images, pixels, outer, n) in _pool_map(_stats_chunk, tasks, workers):
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


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int):
    """Yields advance(n): a rich progress bar, or nothing."""
    if not enabled or total == 0:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def describe(store_dir: str | Path, manifest: dict, limit: int = 20) -> str:
    """The preparation's summary: what the store holds, from what, and every file not used, with the reason."""
    settings, source = manifest["settings"], manifest["source"]
    lines = [
        f"store: {store_dir} ({settings.get('format', 'raw')}, {settings['image_size']} px, version "
        f"{manifest['store_version']})",
        f"source: {describe_source(source)}, {source['form']}; {manifest['num_classes']} classes",
    ]

    def listed(title: str, entries: list[dict]) -> None:
        if entries:
            lines.append(f"  {title}:")
            lines.extend(f"    {e['path']}: {e['reason']}" for e in entries[:limit])
            if len(entries) > limit:
                lines.append(f"    ... and {len(entries) - limit} more, all in {Path(store_dir) / 'manifest.json'}")

    for split, info in manifest["splits"].items():
        lines.append(f"  {split}: {info['images']} images, {len(info['skipped'])} skipped")
        listed(f"skipped in {split} (cannot be decoded; data.strict=true stops at them)", info["skipped"])
    listed("not read from data.root", manifest["layout_oddities"])
    return "\n".join(lines)


def verify(store_dir: str | Path, progress_bar: bool = True) -> list[str]:
    """Every byte of a complete store against the checksums taken when it was written: one line per file, chunk
    file or range of images that differs (none: the store is as prepared). A damaged manifest is a StoreError."""
    root = Path(store_dir)
    manifest = read_manifest(root)
    with _progress(progress_bar, "verifying (bytes)", sum(e["size"] for e in manifest["files"].values())) as advance:
        damaged = damaged_files(root, manifest, advance)
        problems = [f"{name}: {what}" for name, what in damaged.items()]
        for name, entry in sorted(manifest["files"].items()):
            if name in damaged or not is_images(entry):
                continue
            if "xxh3" in entry:  # a JPEG chunk file
                if file_digest(root / name) != entry["xxh3"]:
                    slots = f" (slots {entry['slots'][0]}-{entry['slots'][1] - 1})" if "slots" in entry else ""
                    problems.append(f"{name}{slots}: {DIFFERS}")
            elif entry["image_digests"] in damaged:  # reported above, once: its images are not compared with it
                problems.append(
                    f"{name}: not checked image by image, since its digests file {entry['image_digests']} is damaged; "
                    "its size is as prepared"
                )
            else:
                problems.extend(_verify_images(root, name, root / entry["image_digests"]))
            advance(entry["size"])
    return problems


def _verify_images(root: Path, name: str, digests_file: Path, block: int = 64) -> list[str]:
    """The slot ranges of a raw images file whose bytes no longer match the digests taken as they were written.
    Read with plain reads into one buffer, not through a memory map: the pages of a mapped file count as the
    process's resident memory until the kernel needs them back (10.7 GB for a 20 GB store)."""
    path = root / name
    try:
        mapped, expected = np.load(path, mmap_mode="r"), np.load(digests_file)
    except ValueError as error:
        return [f"{name}: not a readable .npy any more ({error})"]
    count, shape, header = len(mapped), mapped.shape[1:], mapped.offset  # only the header was read
    del mapped
    per_slot = int(np.prod(shape))
    buffer = bytearray(block * per_slot)
    bad = []
    with open(path, "rb", buffering=0) as f:
        f.seek(header)
        for start in range(0, count, block):
            n = min(block, count - start)
            view = memoryview(buffer)[: n * per_slot]
            if f.readinto(view) != len(view):
                return [f"{name}: shorter than its {count} slots"]
            images = np.frombuffer(view, np.uint8).reshape(n, *shape)
            bad.extend(slot for slot, pixels in enumerate(images, start) if image_digest(pixels) != expected[slot])
    ranges = []
    for slot in bad:
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1][1] = slot
        else:
            ranges.append([slot, slot])
    return [
        f"{name} (slots {a}-{b}, bytes {header + a * per_slot:,}-{header + (b + 1) * per_slot - 1:,}): "
        "the images differ from those prepared (checksum mismatch)"
        for a, b in ranges
    ]

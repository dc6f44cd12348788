"""The store's images written in chunks of consecutive slots, resumably, under a lock.

A chunk is recorded as done, one line appended to progress.jsonl (progress.json holds what the unfinished store is
of), only after its pixels are flushed to disk, so a run killed anywhere resumes by redoing the chunks not
recorded, and the result is byte-for-byte what an uninterrupted run writes (each slot's bytes depend only on its
file). Checksums are taken as the bytes are written (in the worker that writes them), never in a second pass over
the store.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet.base.atomic import atomic_write_bytes, atomic_write_json, exclusive
from alexnet.data.identity import describe_source, identity, listing
from alexnet.data.layout import Layout, Member
from alexnet.data.preprocess import load_items
from alexnet.data.settings import StoreSettings
from alexnet.data.space import check_space
from alexnet.data.store import (
    SPLITS,
    StoreError,
    bytes_digest,
    encode_jpeg_chunk,
    image_digest,
    image_digests_path,
    images_path,
    jpeg_chunk_path,
    progress_path,
)


def store_lock(store_dir: Path):
    """The lock that preparing and upgrading a store hold: beside the folder, so that it is not one of its files."""
    return exclusive(store_dir.with_name(f".{store_dir.name}.lock"), f"data.store_dir={store_dir}")


@dataclass(frozen=True)
class ChunkTask:
    """One chunk for a worker process: its items, the slots from `start` on."""

    root: Path
    store_dir: Path
    split: str
    chunk: int
    start: int
    items: list[tuple[str, Member | None]]
    settings: StoreSettings
    strict: bool


@dataclass(frozen=True)
class ChunkDone:
    """A chunk written: its files that could not be decoded and, in a JPEG store, its file's checksum."""

    split: str
    chunk: int
    count: int
    skipped: list[dict]
    checksum: dict | None

    def record(self) -> dict:
        """Its line in progress.jsonl."""
        return {"split": self.split, "chunk": self.chunk, "skipped": self.skipped, "checksum": self.checksum}


def chunk_tasks(layout: Layout, store_dir: Path, settings: StoreSettings, strict: bool, done: dict) -> list[ChunkTask]:
    """The chunks not recorded in `done` ({split: [chunk, ...]})."""
    tasks = []
    for split in SPLITS:
        items, finished, size = getattr(layout, split), set(done[split]), settings.chunk_size
        for chunk, start in enumerate(range(0, len(items), size)):
            if chunk not in finished:
                batch = [(path, layout.members.get(path)) for path, _ in items[start : start + size]]
                tasks.append(ChunkTask(layout.root, store_dir, split, chunk, start, batch, settings, strict))
    return tasks


def process_chunk(task: ChunkTask) -> ChunkDone:
    """In a worker: the chunk's items decoded and written, to a JPEG file of their own or to their slots of the
    raw images (with each slot's digest), flushed before the chunk is reported done."""
    pixels, skipped = load_items(task.root, task.items, task.start, task.settings.image_size, task.strict)
    store_dir, split, chunk, start, count = task.store_dir, task.split, task.chunk, task.start, len(task.items)
    if task.settings.jpeg:
        data = encode_jpeg_chunk(pixels)
        atomic_write_bytes(jpeg_chunk_path(store_dir, split, chunk), data)
        checksum = {"size": len(data), "xxh3": bytes_digest(data), "slots": [start, start + count]}
        return ChunkDone(split, chunk, count, skipped, checksum)
    images = np.load(images_path(store_dir, split), mmap_mode="r+")
    digests = np.load(image_digests_path(store_dir, split), mmap_mode="r+")
    for slot, image in enumerate(pixels, start):
        images[slot] = 0 if image is None else image
        digests[slot] = image_digest(images[slot])
    images.flush()
    digests.flush()
    return ChunkDone(split, chunk, count, skipped, None)


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


HEADER = ("listing", "source", "settings", "chunk_size")  # progress.json: what the unfinished store is of, written once


def progress_log_path(store_dir: Path) -> Path:
    """One line per chunk written, appended as each is done: its split, number, skipped files and checksum."""
    return store_dir / "progress.jsonl"


def record_chunk(store_dir: Path, record: dict) -> None:
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


def add_done(progress: dict, record: dict) -> None:
    """Counts a chunk's record (its line in the log) in what read_progress returns."""
    split, chunk = record["split"], record["chunk"]
    progress["done"][split].append(chunk)
    progress["skipped"][split].extend(record["skipped"])
    if record.get("checksum") is not None:
        progress["chunks"][split][str(chunk)] = record["checksum"]


def read_progress(store_dir: Path, repair: bool = False) -> dict:
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
        add_done(progress, record)
    if repair and whole < len(data):
        os.truncate(log, whole)
    return progress


def open_progress(store_dir: Path, layout: Layout, settings: StoreSettings, source: dict) -> dict:
    """The chunks done of the unfinished store in store_dir, refused unless it is of this layout, source and
    settings; or, in an empty store_dir, a new store set up (its images files reserved whole) with none done."""
    progress_file = progress_path(store_dir)
    items, recorded = listing(layout), settings.as_manifest()
    if progress_file.is_file():
        progress = read_progress(store_dir, repair=True)
        same_source = "source" in progress and identity(progress["source"]) == identity(source)
        # A raw store's manifest settings leave the chunk size out, but its unfinished work is counted in chunks:
        # resumed with another size, the chunks recorded done would name other slots (before the size was
        # recorded here, it was always the default).
        if same_source and progress.get("listing") == items and progress["settings"] == recorded:
            begun_with = progress.get("chunk_size", StoreSettings.chunk_size)
            if begun_with == settings.chunk_size:
                return progress
            raise StoreError(
                f"data.store_dir={store_dir} holds an unfinished store cut into chunks of {begun_with} images, not "
                f"{settings.chunk_size}: resume it with the chunk size it was begun with, or delete it."
            )
        raise StoreError(
            f"data.store_dir={store_dir} holds an unfinished store of other images or settings "
            f"({describe_source(progress['source']) if 'source' in progress else 'another version'}, "
            f"{progress['settings']}), not of data.root={describe_source(source)}. Delete {store_dir} or choose "
            "another data.store_dir."
        )
    if any(store_dir.iterdir()):
        raise StoreError(f"data.store_dir={store_dir} is not empty and holds no store: choose an empty or new folder.")
    check_space(store_dir, layout, settings)
    progress = {
        "listing": items,
        "source": source,
        "settings": recorded,
        "chunk_size": settings.chunk_size,
        "done": {split: [] for split in SPLITS},
        "skipped": {split: [] for split in SPLITS},
        "chunks": {split: {} for split in SPLITS},  # jpeg format: each chunk file's size and checksum
    }
    try:
        for split in SPLITS:
            if settings.jpeg:
                jpeg_chunk_path(store_dir, split, 0).parent.mkdir()
            else:
                size, count = settings.image_size, len(getattr(layout, split))
                _allocate(images_path(store_dir, split), (count, size, size, 3))
                _allocate(image_digests_path(store_dir, split), (count,), np.uint64)
        atomic_write_json(progress_file, {key: progress[key] for key in HEADER})  # the chunks go to the log
    except BaseException:  # a full disk, an interrupt: leave the folder empty, so that a rerun starts afresh
        for path in sorted(store_dir.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        raise
    return progress

"""Preparation, once: each image decoded, its shorter side scaled to 256 and the central 256x256 taken (Section
2, alexnet.data.preprocess), written chunk by chunk into the store (alexnet.data.chunks: resumable, locked); then
the training set's mean image and RGB PCA (alexnet.data.stats); then the manifest. manifest.json is written last:
it is what marks a store complete.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from alexnet.base.atomic import atomic_write_bytes, json_bytes
from alexnet.base.errors import disk_full
from alexnet.data.chunks import (
    add_done,
    chunk_tasks,
    open_progress,
    process_chunk,
    progress_log_path,
    record_chunk,
    store_lock,
)
from alexnet.data.identity import check_source, source_of
from alexnet.data.layout import Layout, LayoutError, discover
from alexnet.data.pool import pool_map, progress
from alexnet.data.settings import StoreSettings
from alexnet.data.space import disk_full_error
from alexnet.data.stats import statistics
from alexnet.data.store import (
    SPLITS,
    STORE_VERSION,
    StoreError,
    bytes_digest,
    file_digest,
    image_digests_path,
    images_path,
    jpeg_chunk_index,
    jpeg_chunk_path,
    jpeg_index_path,
    labels_path,
    progress_path,
    read_manifest,
    write_manifest,
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
    settings = StoreSettings(image_size, store_format, chunk_size)
    source = source_of(root, sample)
    manifest = _existing(store_dir, settings, source)
    if manifest is not None:
        return manifest
    layout = discover(root)
    assert source is not None, "discover() has found data.root"
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"Cannot create data.store_dir={store_dir} ({error}): point it at a writable folder."
        ) from error
    if not os.access(store_dir, os.W_OK):
        raise StoreError(f"data.store_dir={store_dir} is not writable: point it at a writable folder.")
    with store_lock(store_dir):
        manifest = _existing(store_dir, settings, source)
        if manifest is not None:
            return manifest
        try:
            return _prepare(layout, store_dir, settings, source, workers or os.cpu_count() or 1, strict, progress_bar)
        except OSError as error:
            if not disk_full(error):
                raise
            raise disk_full_error(error, store_dir, layout, settings) from error


def _existing(store_dir: Path, settings: StoreSettings, source: dict | None) -> dict | None:
    if not (store_dir / "manifest.json").is_file():
        return None
    try:
        manifest = read_manifest(store_dir)
    except StoreError as error:
        raise StoreError(f"{error} Or choose another data.store_dir.") from None
    if not settings.same_for_readers(manifest["settings"]):
        raise StoreError(
            f"data.store_dir={store_dir} holds a store made with other settings ({manifest['settings']}; wanted "
            f"{settings.as_manifest()}). Delete it or choose another data.store_dir."
        )
    if source is not None:
        check_source(store_dir, manifest["source"], source)
    return manifest


def _prepare(
    layout: Layout,
    store_dir: Path,
    settings: StoreSettings,
    source: dict,
    workers: int,
    strict: bool,
    progress_bar: bool,
) -> dict:
    state = open_progress(store_dir, layout, settings, source)
    tasks = chunk_tasks(layout, store_dir, settings, strict, state["done"])
    with progress(progress_bar, "preparing", sum(len(task.items) for task in tasks)) as advance:
        for chunk in pool_map(process_chunk, tasks, workers):
            record = chunk.record()
            record_chunk(store_dir, record)
            add_done(state, record)
            advance(chunk.count)

    splits, files = {}, {}
    for split in SPLITS:
        splits[split], written = _finish_split(layout, store_dir, settings, state, split)
        files.update(written)
    mean, eigval, eigvec = statistics(store_dir, settings, workers, progress_bar)
    files.update(_save_npy(store_dir, store_dir / "mean.npy", mean.astype(np.float32)))
    files.update(
        _save(store_dir, store_dir / "pca.json", json_bytes({"eigval": eigval.tolist(), "eigvec": eigvec.tolist()}))
    )
    manifest = {
        "store_version": STORE_VERSION,
        "settings": settings.as_manifest(),
        "source": {**state["source"], "form": layout.form, "listing": state["listing"]},
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


def _finish_split(
    layout: Layout, store_dir: Path, settings: StoreSettings, state: dict, split: str
) -> tuple[dict, dict[str, dict]]:
    """A split's labels (-1 where a file was skipped) and, in a JPEG store, its index written once its chunks are
    done; returns its manifest summary and the entries of its files."""
    items = getattr(layout, split)
    labels = np.array([label for _, label in items], dtype=np.int16)
    skipped = sorted(state["skipped"][split], key=lambda s: s["slot"])
    labels[[s["slot"] for s in skipped]] = -1
    if split == "train":
        _refuse_classes_without_images(layout, labels, skipped, store_dir)
    files = _save_npy(store_dir, labels_path(store_dir, split), labels)
    if settings.jpeg:
        size = settings.chunk_size
        index = [
            jpeg_chunk_index(jpeg_chunk_path(store_dir, split, c), c, len(items[start : start + size]))
            for c, start in enumerate(range(0, len(items), size))
        ]
        files.update(_save_npy(store_dir, jpeg_index_path(store_dir, split), np.concatenate(index).astype(np.int64)))
        for chunk, checksum in state["chunks"][split].items():
            files[str(jpeg_chunk_path(store_dir, split, int(chunk)).relative_to(store_dir))] = checksum
    else:
        digests = image_digests_path(store_dir, split)
        files[digests.name] = {"size": digests.stat().st_size, "xxh3": file_digest(digests)}
        images = images_path(store_dir, split)
        files[images.name] = {"size": images.stat().st_size, "image_digests": digests.name}
    summary = {
        "images": int((labels >= 0).sum()),
        "slots": len(items),
        "skipped": [{"path": s["path"], "reason": s["reason"]} for s in skipped],
    }
    return summary, files


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

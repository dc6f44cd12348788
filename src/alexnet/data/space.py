"""The disk space a store takes: estimated before preparing, and said in the errors of a disk too small or full."""

from __future__ import annotations

import shutil
from pathlib import Path

from alexnet.data.layout import Layout
from alexnet.data.settings import StoreSettings
from alexnet.data.store import StoreError

JPEG_BYTES_ESTIMATE = 40_000  # per 256x256 image at quality 90, with room to spare (ILSVRC averages ~17 KB)


def store_bytes(layout: Layout, settings: StoreSettings) -> int:
    """About what the finished store takes on disk."""
    per_image = JPEG_BYTES_ESTIMATE if settings.jpeg else settings.image_size**2 * 3
    return (len(layout.train) + len(layout.val)) * (per_image + 16) + settings.image_size**2 * 12


def _on_disk(store_dir: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in store_dir.rglob("*") if p.is_file())


def check_space(store_dir: Path, layout: Layout, settings: StoreSettings) -> None:
    needed = store_bytes(layout, settings)
    free = shutil.disk_usage(store_dir).free
    if needed > free:
        raise StoreError(
            f"data.store_dir={store_dir} has {free / 1e9:.1f} GB free; the store needs {needed / 1e9:.1f} GB. "
            "Free space or point data.store_dir at a larger disk."
        )


def disk_full_error(error: OSError, store_dir: Path, layout: Layout, settings: StoreSettings) -> StoreError:
    """What a disk that filled during preparation needs: the file it filled at, the space still to free."""
    needed = max(store_bytes(layout, settings) - _on_disk(store_dir), 0)
    return StoreError(
        f"Not enough disk space for {error.filename or store_dir}: about {needed / 1e6:,.0f} MB more are "
        f"needed to finish the store in data.store_dir={store_dir}. Free that much on its disk (or point "
        "data.store_dir at a larger one) and rerun the same command: preparation resumes from the chunks "
        "already written."
    )

"""End to end: the real datamodule reading a prepared store (CPU workers), the batch copied to the device and
augmented there, the training step, under Lightning's Trainer. Beside it, in the same run, each half alone,
so the table says which one bounds training; then peak host and device memory, and the projected time of
the paper's 90 epochs at the measured rate.

    python benchmarks/end_to_end.py                                       # CPU, fp32, 2 workers
    python benchmarks/end_to_end.py --device cuda --precision bf16-mixed --workers 14 --steps 300

The store is the sample dataset, prepared, then repeated to --images training images (the loader reads
the same bytes per image as from an ImageNet store; content does not change its cost). The store is read
from the page cache: on ImageNet (250 GB raw) the disk must also deliver 196 KB per image (docs/data.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from alexnet.base.runtime import keep_freed_memory
from alexnet.data.datamodule import ImageNetDataModule, decode_batch
from alexnet.data.prepare import prepare
from alexnet.data.sample import SampleSpec, make_sample
from alexnet.data.store import (
    Store,
    file_digest,
    image_digests_path,
    images_path,
    jpeg_index_path,
    labels_path,
    write_manifest,
)
from alexnet.training.module import AlexNetModule
from lightning_overhead import OPTIM, SameBatch, StepTimes, timed_trainer

ILSVRC_TRAIN_IMAGES = 1_281_167


def build_store(work: Path, images: int, workers: int, store_format: str) -> Path:
    """A prepared sample store, its training split repeated to `images` images."""
    sample = make_sample(work / "sample", SampleSpec(classes=10, train_per_class=32, val_per_class=2))
    small = work / "small_store"
    prepare(sample, small, workers=workers, progress_bar=False, store_format=store_format)
    store = work / "store"
    shutil.copytree(small, store)
    labels = Store.open(small).labels("train")
    keep = np.flatnonzero(labels >= 0)
    picks = keep[np.arange(images) % len(keep)]
    if store_format == "jpeg":  # the index points at the same JPEG bytes again and again
        np.save(jpeg_index_path(store, "train"), np.load(jpeg_index_path(small, "train"))[picks])
    else:
        source = Store.open(small).images("train")
        out = np.lib.format.open_memmap(images_path(store, "train"), "w+", np.uint8, (images, *source.shape[1:]))
        for start in range(0, images, 1024):
            out[start : start + 1024] = source[picks[start : start + 1024]]
        out.flush()
        np.save(image_digests_path(store, "train"), np.load(image_digests_path(small, "train"))[picks])
    np.save(labels_path(store, "train"), labels[picks])
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["splits"]["train"].update(images=images, slots=images, skipped=[])
    for name, entry in manifest["files"].items():  # the sizes and checksums of the files rewritten above
        entry["size"] = (store / name).stat().st_size
        if "xxh3" in entry:
            entry["xxh3"] = file_digest(store / name)
    write_manifest(store, manifest)
    return store


class OneBatchOnDevice(ImageNetDataModule):
    """The real datamodule's augmentation, fed one uint8 batch that already sits on the device: the
    device's half of training, with no loader and no copy."""

    def __init__(self, batch, steps: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batch, self.steps = batch, steps

    def train_dataloader(self) -> DataLoader:
        return DataLoader(SameBatch(self.batch, self.steps), batch_size=None)


def module(args) -> AlexNetModule:
    torch.manual_seed(0)
    return AlexNetModule({"num_classes": 1000}, OPTIM, channels_last=args.channels_last, compile=args.compile)


def rate(timer: StepTimes, batch_size: int, warmup: int) -> float:
    gaps = np.diff(timer.ends)[warmup:]
    return batch_size / statistics.median(gaps)


def input_pipeline(datamodule: ImageNetDataModule, device: torch.device, steps: int, warmup: int) -> float:
    """Loader workers -> pinned batch -> non-blocking copy (or JPEG decode there) -> augmentation on the
    device, no training step."""
    ends = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loader = datamodule.train_dataloader()
    while len(ends) < steps + warmup:
        for images, labels in loader:
            if isinstance(images, list):  # a JPEG store's batch, decoded on the device as in training
                images = decode_batch(images, device)
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            datamodule.augment(images, training=True)
            sync()
            ends.append(time.perf_counter())
            if len(ends) == steps + warmup:
                break
    gaps = np.diff(ends)[warmup:]
    return datamodule.batch_size / statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", help="a Trainer precision: 32-true, bf16-mixed")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--store-format", default="raw", choices=["raw", "jpeg"])
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement, after the warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=2560, help="training images in the benchmark's store")
    parser.add_argument("--work-dir", type=Path, default=None, help="where to build the store (default: a temp dir)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.channels_last is None:
        args.channels_last = device.type == "cuda"  # as the gpu and cpu trainer configs do
    if device.type == "cpu":
        keep_freed_memory()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="alexnet-e2e-"))
    started = time.perf_counter()
    # In another process, so that the peak memory below is training's, not the store copy's.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        store = pool.submit(build_store, work, args.images, args.workers or 1, args.store_format).result()
    print(f"store: {args.images} images in {store} ({time.perf_counter() - started:.0f} s to build)")
    data = dict(
        root=str(work / "sample"),
        store_dir=str(store),
        store_format=args.store_format,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    steps = args.steps + args.warmup + 1

    datamodule = ImageNetDataModule(**data)
    datamodule.setup()
    pipeline = input_pipeline(datamodule, device, args.steps, args.warmup)

    batch = datamodule.on_before_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    batch = tuple(t.to(device) for t in batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = StepTimes()
    timed_trainer(args.device, steps, timer, args.precision).fit(module(args), OneBatchOnDevice(batch, steps, **data))
    device_side = rate(timer, args.batch_size, args.warmup)

    timer = StepTimes()
    datamodule = ImageNetDataModule(**data)
    timed_trainer(args.device, steps, timer, args.precision).fit(module(args), datamodule)
    end_to_end = rate(timer, args.batch_size, args.warmup)

    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    in_flight = args.workers * 4 * args.batch_size * 256 * 256 * 3 / 2**30  # prefetch_factor 4, uint8 batches
    gpu = f" gpu={torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(
        f"device={device}{gpu} store={args.store_format} precision={args.precision} channels_last={args.channels_last} "
        f"compile={args.compile} workers={args.workers} batch={args.batch_size} steps={args.steps} "
        f"torch={torch.__version__}"
    )
    print("| measurement | images/s |")
    print("|---|---:|")
    print(f"| input pipeline alone (loader workers, copy, augmentation on {device.type}) | {pipeline:,.0f} |")
    print(f"| device alone (augmentation + training step, batch already on {device.type}) | {device_side:,.0f} |")
    print(f"| end to end (Trainer.fit on the datamodule) | {end_to_end:,.0f} |")
    bound = "the input pipeline" if pipeline < device_side else "the device (augmentation + step)"
    print(f"bound by {bound}; end to end / slower half: {end_to_end / min(pipeline, device_side):.2f}")
    hours = 90 * ILSVRC_TRAIN_IMAGES / end_to_end / 3600
    print(f"90 epochs of ILSVRC-2012 ({ILSVRC_TRAIN_IMAGES:,} images) at {end_to_end:,.0f} images/s: {hours:.1f} h")
    # The resident size counts the pages of the memory-mapped store the process touched (page cache).
    print(f"peak host memory: main process {host_peak:.2f} GiB resident; loader batches in flight {in_flight:.2f} GiB")
    if device.type == "cuda":
        print(
            f"peak GPU memory (device alone and end to end): {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        )
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

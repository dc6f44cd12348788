"""Training-loader throughput per CPU core, side by side on the same JPEG files, and preparation speed.

    python benchmarks/loader.py                          # on the sample dataset (generated under data/)
    python benchmarks/loader.py --root /datasets/ilsvrc2012 --store /fast/imagenet_store --limit 5000

(a) torchvision ImageFolder: decode JPEG, Resize(256), RandomCrop(227), flip, ToTensor, Normalize, per image;
(b) this project: uint8 batches read from the prepared store, then the paper's full augmentation (crop,
    flip, mean-image subtraction, PCA lighting) on the CPU;
(b') the same without the augmentation: all a CPU worker does when the augmentation runs on the GPU;
(c) a JPEG store (data.store_format=jpeg) read and decoded on the CPU: what decoding costs where there is
    no GPU to do it (on a GPU, nvJPEG decodes the batch and the worker only reads bytes).
Each runs in one process with one thread, so images/s is images/s per core, with freed memory kept in the
process as train.py keeps it on the CPU (alexnet.base.runtime.keep_freed_memory; it applies to (a) alike).
Rounds alternate (a), (b), ... and the medians are reported. Preparation: load_image (JPEG draft
decoding) vs a plain PIL open + resize.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision.datasets import ImageFolder

from alexnet.base.runtime import keep_freed_memory
from alexnet.data.augment import train_batch
from alexnet.data.datamodule import ShardedBatchSampler, StoreBatches, decode_batch
from alexnet.data.layout import discover
from alexnet.data.prepare import prepare
from alexnet.data.preprocess import load_image
from alexnet.data.sample import SampleSpec, make_sample
from alexnet.data.store import Store


def torchvision_rate(root: Path, skipped: set[str], limit: int, batch: int) -> float:
    transform = T.Compose(
        [
            T.Resize(256),
            T.RandomCrop(227),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    # The files preparation could not read are left out here too (ImageFolder would stop at them).
    readable = lambda path: str(Path(path).relative_to(root)) not in skipped  # noqa: E731
    dataset = ImageFolder(str(root / "train"), transform=transform, is_valid_file=readable)
    indices = np.random.default_rng(0).permutation(len(dataset))[:limit]
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=batch, shuffle=False, num_workers=0)
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def store_rate(store: Store, limit: int, batch: int, augment: bool) -> float:
    labels = store.labels("train")
    slots = np.flatnonzero(labels >= 0)
    dataset = StoreBatches(store, "train", slots, labels)
    sampler = ShardedBatchSampler(min(limit, len(slots)), batch, shuffle=True)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)
    mean, eigval, eigvec = (torch.from_numpy(np.ascontiguousarray(a)) for a in (store.mean, store.eigval, store.eigvec))
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        if isinstance(images, list):
            images = decode_batch(images, torch.device("cpu"))
        out = (
            train_batch(images, mean, eigval, eigvec, crop=227, crops_flips=True, lighting_std=0.1)
            if augment
            else images
        )
        count += len(out)
    return count / (time.perf_counter() - start)


def prepare_rates(root: Path, skipped: set[str], limit: int) -> tuple[float, float]:
    files = [root / path for path, _ in discover(root).train[:limit] if path not in skipped]

    def plain(path):
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            s = 256 / min(w, h)
            return image.resize((max(256, int(w * s)), max(256, int(h * s))), Image.Resampling.BILINEAR)

    rates = []
    for function in (plain, load_image):
        start = time.perf_counter()
        for f in files:
            function(f)
        rates.append(len(files) / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="ILSVRC root (default: the sample dataset)")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=1024, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.25, help="sample image size; 1.25 is ILSVRC's average")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as train.py does on the CPU, where the augmentation runs in the training process
    name = f"bench_sample_{args.scale:g}"
    root = args.root or make_sample(Path("data") / name, SampleSpec(classes=10, train_per_class=120, scale=args.scale))
    store_dir = args.store or Path("data") / f"{name}_store"
    prepare(root, store_dir, workers=None)
    store = Store.open(store_dir)
    jpeg_dir = store_dir.with_name(f"{store_dir.name}_jpeg")
    prepare(root, jpeg_dir, workers=None, store_format="jpeg")
    jpeg = Store.open(jpeg_dir)
    skipped = {s["path"] for s in store.manifest["splits"]["train"]["skipped"]}
    a, b, read, decode = [], [], [], []
    for _ in range(args.rounds):
        a.append(torchvision_rate(root, skipped, args.limit, args.batch_size))
        b.append(store_rate(store, args.limit, args.batch_size, augment=True))
        read.append(store_rate(store, args.limit, args.batch_size, augment=False))
        decode.append(store_rate(jpeg, args.limit, args.batch_size, augment=False))
    plain_rate, ours_rate = prepare_rates(root, skipped, min(args.limit, 500))
    a_med, b_med = statistics.median(a), statistics.median(b)
    print(
        f"files: {root} ({args.limit} images per measurement, batch {args.batch_size}, 1 thread, {args.rounds} rounds)"
    )
    print("| loader (one core)                                   | images/s |")
    print("|-----------------------------------------------------|---------:|")
    print(f"| (a) torchvision ImageFolder, Resize/RandomCrop/flip | {a_med:8.0f} |")
    print(f"| (b) store + crop/flip/mean/PCA lighting, batched    | {b_med:8.0f} |")
    read_med = statistics.median(read)
    print(f"| (b') store read only (augmentation on the GPU)      | {read_med:8.0f} |")
    print(f"(b) / (a) = {b_med / a_med:.1f}x;  (b') / (a) = {read_med / a_med:.1f}x")
    print(f"| (c) JPEG store, read + decode on the CPU            | {statistics.median(decode):8.0f} |")
    print(f"16 cores of (b): {16 * b_med:,.0f} images/s")
    images = jpeg.manifest["splits"]["train"]["images"] + jpeg.manifest["splits"]["val"]["images"]
    jpeg_bytes = sum(p.stat().st_size for p in jpeg_dir.rglob("*.bin")) / images
    raw_bytes = 256 * 256 * 3
    print(
        f"bytes per image: raw {raw_bytes:,}, JPEG quality 90 {jpeg_bytes:,.0f} ({raw_bytes / jpeg_bytes:.1f}x smaller)"
    )
    print("| preparation (one core)                              | images/s |")
    print(f"| plain PIL open + convert + resize                   | {plain_rate:8.0f} |")
    print(f"| load_image (JPEG draft decode, resize, crop)        | {ours_rate:8.0f} |")
    print(f"load_image / plain = {ours_rate / plain_rate:.2f}x")


if __name__ == "__main__":
    main()

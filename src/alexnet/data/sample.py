"""A small dataset in the real ILSVRC-2012 layout, for machines without ImageNet.

    root/train/<wnid>/<wnid>_<i>.JPEG
    root/val/ILSVRC2012_val_<8 digits>.JPEG                     flat, as in the official archive
    root/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt
    root/ILSVRC2012_devkit_t12/data/meta.mat                     synsets, IDs not in sorted-WNID order

Every class has its own colour and stripe orientation, so a network learns it in a few epochs. Sizes and
aspect ratios vary, and the training set holds one file of each kind real ImageNet is known for: a CMYK
JPEG, a PNG named .JPEG, a grayscale JPEG, an image smaller than 256, an extreme aspect ratio, and one file
that cannot be decoded. The same seed gives the same bytes.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.base.atomic import atomic_write_bytes, exclusive
from alexnet.base.rules import require
from alexnet.data.layout import DEVKIT_NAME, GROUND_TRUTH, META, LayoutError

# The special files: (class, index within the class) -> kind.
MESSY = {
    (0, 0): "cmyk",
    (1, 0): "png",
    (2, 0): "grayscale",
    (3, 0): "small",
    (4, 0): "extreme",
    (5, 1): "unreadable",
}


@dataclass(frozen=True)
class SampleSpec:
    classes: int = 10
    train_per_class: int = 40
    val_per_class: int = 10
    seed: int = 0
    scale: float = 1.0  # image sides are scale * (260..420) pixels; ILSVRC's average is about scale 1.25

    def __post_init__(self) -> None:
        require(
            "data.sample",
            classes=self.classes,
            train_per_class=self.train_per_class,
            val_per_class=self.val_per_class,
            scale=self.scale,
        )


def wnid(index: int) -> str:
    return f"n{9_000_000 + index * 7:08d}"


def _size(rng: np.random.Generator, kind: str | None, scale: float) -> tuple[int, int]:
    if kind == "small":
        return 120, 90
    if kind == "extreme":
        return 1400, 150
    area = (scale * rng.uniform(260, 420)) ** 2
    aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.7)))
    return int(np.sqrt(area * aspect)), int(np.sqrt(area / aspect))


def _picture(rng: np.random.Generator, label: int, classes: int, size: tuple[int, int]) -> np.ndarray:
    """A stripe pattern in the class's colour and orientation, with noise: (H, W, 3) uint8."""
    width, height = size
    hue = label / classes
    base = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255
    angle = np.pi * label / classes + rng.normal(0, 0.05)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(18, 30) * max(width, height) / 400
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + rng.uniform(0, 6.3))
    image = base * (0.45 + 0.55 * wave[..., None]) + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _write(path: Path, pixels: np.ndarray, kind: str | None, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if kind == "unreadable":
        path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG, only its first bytes")
    elif kind == "cmyk":
        image.convert("CMYK").save(path, "JPEG", quality=quality)
    elif kind == "png":
        image.save(path, "PNG")
    elif kind == "grayscale":
        image.convert("L").save(path, "JPEG", quality=quality)
    else:
        image.save(path, "JPEG", quality=quality)


def _meta_mat(classes: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """meta.mat as in the devkit: a struct array 'synsets' of leaves (num_children 0) plus one inner node,
    ILSVRC2012_IDs given in a shuffled order, so that ID order and sorted-WNID order differ as in the real one.
    Returns the file and ids, where ids[c] is class c's ILSVRC2012_ID."""
    from scipy.io import savemat

    ids = rng.permutation(classes) + 1  # ids[c] is class c's ILSVRC2012_ID
    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    records: list[tuple[int, str, str, str, int, np.ndarray, int, int]] = [
        (int(ids[c]), wnid(c), f"sample class {c}", "a stripe pattern", 0, np.zeros((0,), np.uint8), 0, 0)
        for c in range(classes)
    ]
    records.append((classes + 1, "n08999999", "sample root", "inner node", classes, np.arange(1, classes + 1), 1, 0))
    order = np.argsort([r[0] for r in records])
    synsets = np.zeros((len(records),), dtype=[(f, object) for f in fields])
    for row, index in enumerate(order):
        synsets[row] = records[index]
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return buffer.getvalue(), ids


def _made(root: Path, spec: SampleSpec) -> bool:
    """Whether root holds the complete sample dataset of `spec`; another spec's is refused, never mixed in."""
    marker = root / ".complete"
    if not marker.is_file():
        return False
    found = marker.read_text().strip()
    if found != str(spec):
        raise LayoutError(
            f"data.root={root} holds the sample dataset {found}, not the data.sample asked for ({spec}). Point "
            "data.root at another folder (the default is one folder per data.sample), or delete it."
        )
    return True


def make_sample(root: str | Path, spec: SampleSpec = SampleSpec()) -> Path:
    """Write the sample dataset under root (unless it is there, complete) and return root."""
    root = Path(root)
    if _made(root, spec):
        return root
    with exclusive(root.with_name(f".{root.name}.lock"), f"the sample dataset {root}"):
        if not _made(root, spec):
            _make_sample(root, spec)
    return root


def _make_sample(root: Path, spec: SampleSpec) -> None:
    rng = np.random.default_rng(spec.seed)
    for c in range(spec.classes):
        for i in range(spec.train_per_class):
            kind = MESSY.get((c, i))
            pixels = _picture(rng, c, spec.classes, _size(rng, kind, spec.scale))
            _write(root / "train" / wnid(c) / f"{wnid(c)}_{i}.JPEG", pixels, kind, quality=int(rng.integers(75, 95)))
    labels = rng.permutation(np.repeat(np.arange(spec.classes), spec.val_per_class))
    for n, label in enumerate(labels, start=1):
        pixels = _picture(rng, int(label), spec.classes, _size(rng, None, spec.scale))
        _write(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG", pixels, None, quality=90)
    meta, ids = _meta_mat(spec.classes, rng)
    devkit = root / DEVKIT_NAME
    atomic_write_bytes(devkit / META, meta)
    atomic_write_bytes(devkit / GROUND_TRUTH, "".join(f"{ids[int(label)]}\n" for label in labels).encode())
    (root / ".complete").write_text(f"{spec}\n")

"""Section 2's preprocessing of one image: decoded, the shorter side scaled to 256, the central 256x256 cropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.base.errors import UserError
from alexnet.data.augment import centre_offset
from alexnet.data.layout import Member, open_item

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


def load_items(
    root: Path, items: list[tuple[str, Member | None]], start: int, size: int, strict: bool
) -> tuple[list[np.ndarray | None], list[dict]]:
    """The images of consecutive slots from `start`, None for each file that cannot be decoded, and those files
    with the reason; with `strict`, the first such file is an UnreadableImageError instead."""
    pixels: list[np.ndarray | None] = []
    skipped = []
    for slot, (path, member) in enumerate(items, start):
        try:
            pixels.append(load_image(open_item(root, path, member), size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            if strict:
                raise UnreadableImageError(
                    f"Cannot read {root / path}: {error}. Remove or replace the file, or set "
                    "data.strict=false to skip unreadable files and list them in the manifest."
                ) from error
            pixels.append(None)
            skipped.append({"slot": slot, "path": path, "reason": f"{type(error).__name__}: {error}"})
    return pixels, skipped

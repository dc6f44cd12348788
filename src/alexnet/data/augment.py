"""The paper's augmentation (Section 4.1) and test-time crops, on whole uint8 batches, on any device.

Input: (B, S, S, 3) uint8 RGB from the store (S = 256). Output: float32 (B, 3, c, c) in channels_last
memory, mean image subtracted (raw centred RGB, 0-255 scale, as in Section 2), or (B, 10, 3, c, c) for
10-crop evaluation. On an accelerator crop and flip are one gather per batch; on a CPU, one slice per image.
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF


def centre_offset(size: int, crop: int) -> int:
    """torchvision's center_crop rounding (half to even), so that our central crop is its central crop."""
    return round((size - crop) / 2.0)


def _window_indices(offsets: torch.Tensor, crop: int, flip: torch.Tensor | None) -> torch.Tensor:
    """(B, crop) pixel indices along one axis: offset + 0..crop-1, reversed where flip is set."""
    steps = torch.arange(crop, device=offsets.device)
    if flip is not None:
        steps = torch.where(flip[:, None], crop - 1 - steps, steps)
    return offsets[:, None] + steps


def _gather(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """images[b, rows[b, i], cols[b, j], :] for every b, i, j: (B, crop, crop, C)."""
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    return images[batch, rows[:, :, None], cols[:, None, :]]


def pca_lighting_offsets(
    batch: int, eigval: torch.Tensor, eigvec: torch.Tensor, std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, 3) RGB offsets on the 0-255 scale: [p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T, a_i ~ N(0, std), drawn once
    per image. eigval and eigvec are of the covariance of pixels in [0, 1], so the result is x255."""
    alpha = torch.randn(batch, 3, device=eigval.device, generator=generator) * std
    return (alpha * eigval) @ eigvec.T * 255.0


def _crops(
    images: torch.Tensor,
    mean: torch.Tensor | None,
    offsets: torch.Tensor,
    flip: torch.Tensor | None,
    crop: int,
    lighting: torch.Tensor | None,
) -> torch.Tensor:
    """float32 (B, crop, crop, 3): each image's window at offsets[:, b] (top, left), mirrored where flip is
    set, minus the same window of the mean image, plus the image's RGB offset lighting[b]. Two ways to the same
    numbers: on a CPU, slicing each image's window (a view) and subtracting in one pass beats gathering with
    index tensors by about 5x; on an accelerator one gather beats a hundred small kernels."""
    crops = _sliced_crops if images.device.type == "cpu" else _gathered_crops
    return crops(images, mean, offsets, flip, crop, lighting)


def _sliced_crops(images, mean, offsets, flip, crop, lighting) -> torch.Tensor:
    out = torch.empty((images.shape[0], crop, crop, 3), dtype=torch.float32, device=images.device)
    flips = flip.tolist() if flip is not None else [False] * images.shape[0]
    # Each image's RGB offset as a whole row of pixels: adding a row is 10x faster than broadcasting RGB.
    rows = lighting.repeat(1, crop) if lighting is not None else None
    for b, (top, left) in enumerate(offsets.T.tolist()):
        window = images[b, top : top + crop, left : left + crop]
        reference = mean[top : top + crop, left : left + crop] if mean is not None else None
        if flips[b]:
            window = window.flip(1)
            reference = reference.flip(1) if reference is not None else None
        if reference is None:
            out[b].copy_(window)
        else:
            torch.sub(window, reference, out=out[b])
        if rows is not None:  # while the image is in cache
            out[b].view(crop, crop * 3).add_(rows[b])
    return out


def _gathered_crops(images, mean, offsets, flip, crop, lighting) -> torch.Tensor:
    rows, cols = _window_indices(offsets[0], crop, None), _window_indices(offsets[1], crop, flip)
    out = _gather(images, rows, cols).float()
    if mean is not None:
        out -= _gather(mean.expand(images.shape[0], -1, -1, -1), rows, cols)
    if lighting is not None:
        out += lighting[:, None, None, :]
    return out


def train_batch(
    images: torch.Tensor,
    mean: torch.Tensor | None,
    eigval: torch.Tensor,
    eigvec: torch.Tensor,
    crop: int,
    crops_flips: bool,
    lighting_std: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random crop + horizontal flip (or the central crop when crops_flips is off), mean image subtracted
    from the same window, PCA lighting noise of std `lighting_std` added. No defaults: the paper's values
    live in the config (data.crops_flips, data.pca_lighting) alone."""
    size, count, device = images.shape[1], images.shape[0], images.device
    if crops_flips:
        offsets = torch.randint(0, size - crop + 1, (2, count), device=device, generator=generator)
        flip = torch.rand(count, device=device, generator=generator) < 0.5
    else:
        offsets = torch.full((2, count), centre_offset(size, crop), device=device)
        flip = None
    lighting = pca_lighting_offsets(count, eigval, eigvec, lighting_std, generator) if lighting_std > 0 else None
    return _crops(images, mean, offsets, flip, crop, lighting).permute(
        0, 3, 1, 2
    )  # (B, 3, crop, crop), channels_last in memory


def eval_batch(images: torch.Tensor, mean: torch.Tensor | None, crop: int, ten_crop: bool) -> torch.Tensor:
    """The central crop, (B, 3, c, c); or torchvision's TenCrop (the five crops, then the five crops of the
    flipped image), (B, 10, 3, c, c), channels_last in memory like the training batches. The mean image is
    subtracted before cropping."""
    centred = images.float()
    if mean is not None:
        centred -= mean
    planar = centred.permute(0, 3, 1, 2)  # (B, 3, S, S), a view: torchvision's crops take batches as they are
    if not ten_crop:
        return TF.center_crop(planar, [crop, crop])
    crops = TF.five_crop(planar, [crop, crop]) + TF.five_crop(TF.horizontal_flip(planar), [crop, crop])
    # Stacked as (B, 10, c, c, 3), so each crop stays channels_last (torch.stack of the planar views would not).
    return torch.stack([c.permute(0, 2, 3, 1) for c in crops], dim=1).permute(0, 1, 4, 2, 3)

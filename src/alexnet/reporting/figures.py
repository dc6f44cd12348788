"""What a trained run learned, for the notebooks: its conv1 kernels per column (Figure 3), its top-5
predictions and each image's nearest training images by Euclidean distance of fc7 activations (Figure 4)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexnet.base.checkpoints import read_checkpoint
from alexnet.data.augment import eval_batch
from alexnet.data.store import Store
from alexnet.training.module import AlexNetModule, module_from_checkpoint
from alexnet.training.results import read_results


@dataclass
class TrainedRun:
    directory: Path
    results: dict
    module: AlexNetModule  # in eval mode, on the GPU when there is one
    store: Store


def load_run(run_dir: str | Path, device: str | None = None) -> TrainedRun:
    """A finished run: results.json, the checkpoint it evaluated, and the store it was trained on; the
    network on `device` (default: the GPU when there is one, for fc7 features of many images)."""
    directory = Path(run_dir)
    if not (directory / "results.json").is_file():
        raise FileNotFoundError(f"No results.json in {directory}: give the folder of a finished run (train.py).")
    results = read_results(directory)
    checkpoint = results.get("checkpoint") or directory / "checkpoints" / "last.ckpt"
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"The run {directory} has no checkpoint at {checkpoint}.")
    if "store_dir" not in results:
        raise KeyError(f"{directory / 'results.json'} does not say which store the run used (store_dir).")
    module = module_from_checkpoint(read_checkpoint(checkpoint), one_device=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return TrainedRun(directory, results, module.eval().to(device), Store.open(results["store_dir"]))


def conv1_kernels(module: AlexNetModule) -> list[torch.Tensor]:
    """conv1's kernels, (n, 3, 11, 11) per column: Figure 3 shows the 48 of each GPU in a block of its own."""
    weight = module.net.state_dict()["conv1.conv.weight"]  # grouped layout for either placement
    return list(weight.detach().cpu().float().chunk(module.net.columns, dim=0))


def kernel_grid(kernels: torch.Tensor, per_row: int = 8, pad: int = 1) -> np.ndarray:
    """Kernels (n, 3, k, k) tiled into one RGB image (rows*(k+pad)+pad, per_row*(k+pad)+pad, 3) in [0, 1].
    All kernels share one scale, centred on grey, so their contrasts compare as in the paper's figure."""
    n, _, k, _ = kernels.shape
    rows = -(-n // per_row)
    scale = 2 * float(kernels.abs().max()) or 1.0
    tiles = (kernels / scale + 0.5).permute(0, 2, 3, 1).numpy()
    grid = np.ones((rows * (k + pad) + pad, per_row * (k + pad) + pad, 3), dtype=np.float32)
    for i, tile in enumerate(tiles):
        top, left = pad + (i // per_row) * (k + pad), pad + (i % per_row) * (k + pad)
        grid[top : top + k, left : left + k] = tile
    return grid


@torch.no_grad()
def centre_crop_outputs(run: TrainedRun, split: str, slots: np.ndarray, batch_size: int = 64):
    """(fc7 activations (N, 4096), class probabilities (N, classes)) of the images at `slots` of `split`,
    each seen as in testing with one crop: the centre crop, mean image subtracted."""
    device = run.module.device
    mean = torch.from_numpy(np.ascontiguousarray(run.store.mean)).to(device)
    crop = run.module.hparams["model"].get("input_size", 227)
    net = run.module.net
    features, probs = [], []
    for start in range(0, len(slots), batch_size):
        batch = torch.from_numpy(run.store.read(split, slots[start : start + batch_size])).to(device)
        h = net.features(eval_batch(batch, mean, crop, ten_crop=False))
        features.append(h.cpu())
        probs.append(net.fc8(h).softmax(dim=1).cpu())
    return torch.cat(features), torch.cat(probs)


def nearest(queries: torch.Tensor, bank: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices), each (Q, k): the k rows of `bank` closest to each query in Euclidean distance,
    closest first."""
    distances = torch.cdist(queries.double(), bank.double())
    found = distances.topk(min(k, len(bank)), dim=1, largest=False)
    return found.values, found.indices


def readable_slots(store: Store, split: str) -> np.ndarray:
    """Store positions of the images that were read (skipped, unreadable files hold label -1)."""
    return np.flatnonzero(store.labels(split) >= 0)


def colour_share(kernels: torch.Tensor) -> float:
    """The share of the kernels' energy that is colour, not grey: ||w - mean over RGB of w||^2 / ||w||^2.
    Figure 3: column 1's kernels are largely colour-agnostic (low), column 2's colour-specific (high)."""
    grey = kernels.mean(dim=1, keepdim=True)
    return float((kernels - grey).pow(2).sum() / kernels.pow(2).sum())

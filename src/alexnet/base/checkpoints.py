"""Checkpoints that prove their own bytes: a checksum of every tensor in a checkpoint (the weights, the momentum:
nearly all of its bytes) is written into it when it is saved (training.checkpoint_io.AtomicCheckpointIO), and checked
wherever a checkpoint is read: resuming, eval.py, `AlexNet.from_checkpoint`, the figures. A flipped byte in a
tensor would otherwise load silently; one in the rest of the file fails to unpickle."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import torch
import xxhash

from alexnet.base.errors import CheckpointError

KEY = "tensors_xxh3"  # checkpoints written before it existed have none, and are read unchecked


def _tensors(node, name: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a checkpoint's nested dicts and lists, with its path, in an order that does not depend on
    how the dicts were built."""
    if isinstance(node, torch.Tensor):
        yield name, node
    elif isinstance(node, dict):
        for key in sorted(node, key=str):
            if key != KEY:
                yield from _tensors(node[key], f"{name}/{key}")
    elif isinstance(node, list | tuple):
        for index, item in enumerate(node):
            yield from _tensors(item, f"{name}/{index}")


def digest(checkpoint: dict) -> str:
    """The checksum of the checkpoint's tensors: their paths, dtypes, shapes and bytes."""
    hasher = xxhash.xxh3_128()
    for name, tensor in _tensors(checkpoint):
        hasher.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        # ignored: an ndarray is a buffer; numpy's stubs declare its __buffer__ for Python >= 3.12 only
        hasher.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    return hasher.hexdigest()


def with_digest(checkpoint: dict) -> dict:
    return {**checkpoint, KEY: digest(checkpoint)}


def read_checkpoint(path: str | Path, mmap: bool = False, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint as a dict, its tensors checked against the checksum written with them; with mmap, the tensors
    are read from the file as they are checked, not held in memory."""
    try:
        # weights_only: the checkpoints train.py writes hold tensors, numbers, strings and containers only, so a file
        # from elsewhere that would run code as it is unpickled is refused rather than run
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise CheckpointError(
            f"ckpt_path: cannot read {path} ({error}): give a checkpoint that train.py wrote."
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"ckpt_path: {path} holds no checkpoint of train.py's: give one that train.py wrote.")
    if KEY in checkpoint and checkpoint[KEY] != digest(checkpoint):
        raise CheckpointError(
            f"{path} is damaged: its tensors differ from the checksum written with them (a changed or lost byte). "
            "Use another checkpoint of the run (checkpoints/best-*.ckpt, or last.ckpt of the previous epoch in a "
            "backup), or start the run afresh."
        )
    return checkpoint

"""Which checkpoint a run resumes from, and whether the command agrees with it.

`ckpt_path=last` (or a requeued SLURM job, which resumes without being told) takes the newest of the run's
`checkpoints/last.ckpt` and Lightning's `hpc_ckpt_*.ckpt`; before training, everything that shapes the
training (the network, the optimiser, the data and its augmentation, the seed) is compared with what the
checkpoint was trained with, and every disagreement is listed in one error. More epochs, other loader workers,
another evaluation batch size or another placement of the same network are changes a resumed run honours.
"""

from __future__ import annotations

from pathlib import Path

from alexnet.base.checkpoints import read_checkpoint
from alexnet.base.errors import CheckpointError
from alexnet.network.model import trained_as
from alexnet.training.rundir import HPC_CHECKPOINTS

# Data settings that change what the network is trained on; the store's identity is compared by its manifest.
DATA_KEYS = ("image_size", "crop_size", "crops_flips", "pca_lighting", "mean_subtraction", "batch_size")
# Model settings that change nothing of the weights or the arithmetic: where the columns run.
PLACEMENT_KEYS = ("placement", "devices")


def newest_checkpoint(directory: Path, checkpoint_dir: Path) -> Path | None:
    """The newest of last.ckpt and the hpc checkpoints SLURM's signal left, or None."""
    found = [p for p in (checkpoint_dir / "last.ckpt", *directory.glob(HPC_CHECKPOINTS)) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def read_hyperparameters(path: str | Path) -> dict:
    """What a checkpoint was trained with, without reading its weights into memory (a memory map)."""
    checkpoint = read_checkpoint(path, mmap=True)
    if "optimizer_states" not in checkpoint:
        raise CheckpointError(
            f"ckpt_path: {path} holds the network's weights only (as the best checkpoint does), not the momentum and "
            "schedule a run goes on from: resume from last.ckpt (ckpt_path=last), or evaluate it with eval.py."
        )
    return {
        "model": trained_as(checkpoint["hyper_parameters"]["model"]),
        "optim": dict(checkpoint["hyper_parameters"]["optim"]),
        "data": dict(checkpoint.get("datamodule_hyper_parameters", {})),
        "store": checkpoint.get("ImageNetDataModule", {}).get("store"),  # the datamodule's state_dict
        "global_step": checkpoint.get("global_step"),
    }


def disagreements(trained: dict, model: dict, optim: dict, data: dict, store: dict) -> list[str]:
    """Each setting of this command (model, optim, data as the constructors get them; store: the manifest's
    checksum and source) that differs from the checkpoint's, as "key: checkpoint A, this command B"."""
    found = []

    def compare(prefix: str, theirs: dict, ours: dict, keys) -> None:
        for key in keys:
            if key in theirs and theirs[key] != ours.get(key):
                found.append(f"{prefix}{key}: checkpoint {theirs[key]!r}, this command {ours.get(key)!r}")

    compare("model.", trained["model"], model, [k for k in trained["model"] if k not in PLACEMENT_KEYS])
    compare("optim.", trained["optim"], optim, trained["optim"])
    compare("data.", trained["data"], data, DATA_KEYS)
    if "seed" in trained["data"] and trained["data"]["seed"] != data["seed"]:
        found.append(f"seed: checkpoint {trained['data']['seed']}, this command {data['seed']}")
    theirs = trained["store"]
    same_store = (store["manifest_xxh3"], store.get("earlier_manifest_xxh3"))  # the latter: before an upgrade
    if theirs is not None and theirs["manifest_xxh3"] not in same_store:
        found.append(
            f"data: checkpoint trained on the store made from {theirs['source']}, this command's store "
            f"{data['store_dir']} was made from {store['source']}"
        )
    elif theirs is None and "root" in trained["data"]:  # checkpoints from before the store was recorded
        compare("data.", trained["data"], data, ["root"])
    return found


def check_agreement(trained: dict, path: str | Path, model: dict, optim: dict, data: dict, store: dict) -> None:
    """Raises CheckpointError listing every setting of this command that the checkpoint at `path` (whose
    read_hyperparameters are `trained`) contradicts."""
    found = disagreements(trained, model, optim, data, store)
    if found:
        raise CheckpointError(
            f"ckpt_path: {path} was trained with other settings than this command's:\n  "
            + "\n  ".join(found)
            + "\nResume with the checkpoint's settings (drop or change these overrides), or start a fresh run "
            "without ckpt_path (the earlier run is set aside, not deleted)."
        )

"""Finding ILSVRC-2012 in the forms people download it in, and its labels (Section 2).

Accepted layouts under `data.root`:
  1. train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the val folder sorted into class folders);
  2. train/<wnid>/*.JPEG and a flat val/*.JPEG, labelled by the devkit (ILSVRC2012_devkit_t12/ beside them,
     extracted, or ILSVRC2012_devkit_t12.tar.gz): data/ILSVRC2012_validation_ground_truth.txt has one
     ILSVRC2012_ID per line in sorted file-name order, and data/meta.mat maps IDs to WNIDs.

Class indices are positions in the sorted list of WNIDs (torchvision's order), never ILSVRC2012_IDs:
ID 1 is n02119789 (kit fox), class 278 in sorted order.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
DEVKIT_NAME = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
ACCEPTED = (
    "train/<wnid>/*.JPEG with val/<wnid>/*.JPEG; or train/<wnid>/*.JPEG with a flat val/*.JPEG and the devkit "
    f"({DEVKIT_NAME}/ or {DEVKIT_NAME}.tar.gz) beside them"
)


class LayoutError(ValueError):
    """data.root does not hold ILSVRC in a form we read; the message says what was found."""


@dataclass(frozen=True)
class Layout:
    root: Path
    wnids: list[str]  # sorted; the class index is the position here
    class_names: list[str]  # from the devkit when present, else the WNIDs
    train: list[tuple[str, int]]  # (path relative to root, class index), sorted by path
    val: list[tuple[str, int]]
    form: str  # which accepted layout was found

    @property
    def num_classes(self) -> int:
        return len(self.wnids)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def read_devkit(root: Path) -> tuple[list[int], dict[int, tuple[str, str]]] | None:
    """(validation ILSVRC2012_IDs in file-name order, {ILSVRC2012_ID: (wnid, words)} of the leaf synsets),
    from the extracted devkit or its archive; None when there is no devkit."""
    folder, archive = root / DEVKIT_NAME, root / f"{DEVKIT_NAME}.tar.gz"
    if folder.is_dir():
        truth, meta = (folder / GROUND_TRUTH).read_bytes(), (folder / META).read_bytes()
    elif archive.is_file():
        with tarfile.open(archive) as tar:
            truth = tar.extractfile(f"{DEVKIT_NAME}/{GROUND_TRUTH}").read()
            meta = tar.extractfile(f"{DEVKIT_NAME}/{META}").read()
    else:
        return None
    from scipy.io import loadmat  # only the devkit needs it

    synsets = loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    leaves = {
        int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"])) for s in synsets if int(s["num_children"]) == 0
    }
    ids = [int(line) for line in truth.decode().split()]
    return ids, leaves


def discover(root: str | Path) -> Layout:
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(
            f"data.root={root} does not exist. Point data.root at your ILSVRC-2012 folder "
            f"(accepted: {ACCEPTED}), or use data=sample to try the pipeline without ImageNet."
        )
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not val_dir.is_dir():
        found = sorted(p.name for p in root.iterdir())[:20]
        raise LayoutError(f"Layout of data.root={root} not recognised: found {found}. Accepted: {ACCEPTED}.")
    class_dirs = _class_folders(train_dir)
    if not class_dirs:
        raise LayoutError(f"{train_dir} has no class folders (train/<wnid>/*.JPEG). Accepted: {ACCEPTED}.")
    wnids = [d.name for d in class_dirs]
    index = {wnid: i for i, wnid in enumerate(wnids)}
    train = [(str(p.relative_to(root)), index[d.name]) for d in class_dirs for p in _images(d)]
    devkit = read_devkit(root)
    class_names = list(wnids)
    if devkit is not None:
        leaves = dict(devkit[1].values())
        class_names = [leaves.get(w, w) for w in wnids]
        if set(leaves) != set(wnids):
            raise LayoutError(
                f"The devkit under {root} names {len(leaves)} classes but {train_dir} has {len(wnids)} class "
                f"folders, and they differ (e.g. {sorted(set(leaves) ^ set(wnids))[:3]}). Use the devkit that "
                "belongs to this training set."
            )
    val_class_dirs = _class_folders(val_dir)
    if val_class_dirs:
        unknown = [d.name for d in val_class_dirs if d.name not in index]
        if unknown:
            raise LayoutError(f"{val_dir} has class folders that train/ lacks: {unknown[:5]}")
        val = [(str(p.relative_to(root)), index[d.name]) for d in val_class_dirs for p in _images(d)]
        form = "class folders"
    else:
        if devkit is None:
            raise LayoutError(
                f"{val_dir} is flat but no devkit labels it: put {DEVKIT_NAME}/ (extracted) or "
                f"{DEVKIT_NAME}.tar.gz in {root}, or sort val/ into class folders. Accepted: {ACCEPTED}."
            )
        ids, leaves = devkit
        files = _images(val_dir)
        if len(files) != len(ids):
            raise LayoutError(
                f"{val_dir} has {len(files)} images but the devkit's ground truth has {len(ids)} labels; "
                "the validation set is incomplete or the devkit is for another set."
            )
        val = [(str(p.relative_to(root)), index[leaves[i][0]]) for p, i in zip(files, ids, strict=True)]
        form = "flat val with devkit"
    if not train or not val:
        raise LayoutError(f"No images found under {root} (train: {len(train)}, val: {len(val)}).")
    return Layout(root, wnids, class_names, train, val, form)

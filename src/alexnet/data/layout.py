"""Finding ILSVRC-2012 in the forms people download it in, and its labels (Section 2).

Accepted layouts under `data.root`, each split on its own:
  train: train/<wnid>/*.JPEG, or the official ILSVRC2012_img_train.tar (one uncompressed <wnid>.tar per class);
  val:   val/<wnid>/*.JPEG (sorted into class folders); or a flat val/*.JPEG or the official
         ILSVRC2012_img_val.tar, labelled by the devkit (ILSVRC2012_devkit_t12/ extracted, or
         ILSVRC2012_devkit_t12.tar.gz): data/ILSVRC2012_validation_ground_truth.txt has one ILSVRC2012_ID per
         line in sorted file-name order, and data/meta.mat maps IDs to WNIDs.
The archives are read in place, never extracted: an image in one is a byte range of the tar file (`Member`),
found once by reading the tar headers.

Class indices are positions in the sorted list of WNIDs (torchvision's order), never ILSVRC2012_IDs:
ID 1 is n02119789 (kit fox), class 278 in sorted order.

Whatever is not read (a file that is not an image, a symlink loop or a broken link, a folder where images are
expected, an empty validation class folder) is listed with the reason in `Layout.oddities`; an empty training
class folder is refused, since it would be a class without images that shifts the index of every class after it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.base.errors import UserError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
DEVKIT_NAME = "ILSVRC2012_devkit_t12"
TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
ACCEPTED = (
    f"train/<wnid>/*.JPEG or {TRAIN_ARCHIVE}; and val/<wnid>/*.JPEG, or a flat val/*.JPEG or {VAL_ARCHIVE} "
    f"with the devkit ({DEVKIT_NAME}/ or {DEVKIT_NAME}.tar.gz) beside them"
)


class LayoutError(UserError, ValueError):
    """data.root does not hold ILSVRC in a form we read; the message says what was found."""


@dataclass(frozen=True)
class Member:
    """An image inside an uncompressed tar under data.root: `size` bytes at `offset` of the file `archive`."""

    archive: str
    offset: int
    size: int


@dataclass(frozen=True)
class Layout:
    root: Path
    wnids: list[str]  # sorted; the class index is the position here
    class_names: list[str]  # from the devkit when present, else the WNIDs
    train: list[tuple[str, int]]  # (path relative to root, class index), sorted by path
    val: list[tuple[str, int]]
    form: str  # which accepted layout was found
    members: dict[str, Member] = field(default_factory=dict)  # the items that live inside an archive
    oddities: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"} of what is not read

    @property
    def num_classes(self) -> int:
        return len(self.wnids)


def _odd(oddities: list[dict[str, str]], root: Path, path: Path | str, reason: str) -> None:
    oddities.append({"path": str(Path(path).relative_to(root)) if isinstance(path, Path) else path, "reason": reason})


def _scan(folder: Path, root: Path, oddities: list[dict[str, str]]) -> tuple[list[Path], list[Path]]:
    """(image files, folders) in `folder`, each sorted; anything else goes to `oddities` with the reason."""
    images, folders = [], []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    os.stat(path)
                except OSError as error:
                    loop = error.errno == errno.ELOOP
                    _odd(oddities, root, path, "a symlink loop" if loop else f"a broken symlink ({error.strerror})")
                    continue
            if entry.is_dir():
                folders.append(path)
            elif not entry.is_file():
                _odd(oddities, root, path, "neither a file nor a folder")
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                _odd(oddities, root, path, f"not an image (only {'/'.join(sorted(IMAGE_SUFFIXES))} files are read)")
    return images, folders


def _class_folders(
    folder: Path, root: Path, oddities: list[dict[str, str]]
) -> tuple[dict[str, list[Path]], list[Path]]:
    """({class folder name: its images}, the images directly in `folder`) of train/ or val/; other files and
    folders inside the class folders are listed as oddities."""
    loose, folders = _scan(folder, root, oddities)
    classes = {}
    for class_folder in folders:
        images, nested = _scan(class_folder, root, oddities)
        for path in nested:
            _odd(oddities, root, path, "a folder inside a class folder: not read")
        classes[class_folder.name] = images
    return classes, loose


def open_item(root: Path, path: str, member: Member | None):
    """What PIL opens for an item: its file, or the bytes of its archive member."""
    if member is None:
        return root / path
    with open(root / member.archive, "rb") as f:
        f.seek(member.offset)
        return io.BytesIO(f.read(member.size))


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _members(tar: tarfile.TarFile, prefix: str, offset: int, archive: str, oddities: list) -> list[tuple[str, Member]]:
    """[(item path, member), ...] of the images in `tar` (which starts `offset` bytes into `archive`), sorted;
    other members are listed as oddities."""
    items = []
    for m in tar:
        if m.isfile() and _is_image(m.name):
            items.append((f"{prefix}/{m.name}", Member(archive, offset + m.offset_data, m.size)))
        elif not m.isdir():
            kind = "not an image" if m.isfile() else "not a regular file"
            _odd(oddities, Path(), f"{prefix}/{m.name}", f"{kind} in the archive: not read")
    return sorted(items)


def _train_archive(path: Path, oddities: list) -> dict[str, list[tuple[str, Member]]]:
    """{wnid: [(item path, member), ...]} from ILSVRC2012_img_train.tar, which holds one uncompressed tar per
    class: only the headers are read, the JPEGs' places are computed from their offsets."""
    classes: dict[str, list[tuple[str, Member]]] = {}
    with tarfile.open(path, "r:") as outer:
        for inner in outer:
            if not (inner.isfile() and inner.name.endswith(".tar")):
                if not inner.isdir():
                    _odd(oddities, Path(), f"{path.name}/{inner.name}", "not a per-class <wnid>.tar: not read")
                continue
            with tarfile.open(fileobj=outer.extractfile(inner), mode="r:") as tar:
                prefix = f"{path.name}/{inner.name}"
                classes[Path(inner.name).stem] = _members(tar, prefix, inner.offset_data, path.name, oddities)
    return classes


def _flat_archive(path: Path, oddities: list) -> list[tuple[str, Member]]:
    """[(item path, member), ...] of ILSVRC2012_img_val.tar, sorted by file name as the devkit's labels are."""
    with tarfile.open(path, "r:") as tar:
        return _members(tar, path.name, 0, path.name, oddities)


def _archived_file(tar: tarfile.TarFile, archive: Path, name: str) -> bytes:
    member = tar.extractfile(f"{DEVKIT_NAME}/{name}")  # KeyError: not in the archive; None: not a regular file
    if member is None:
        raise LayoutError(f"{archive}: {DEVKIT_NAME}/{name} is not a regular file: extract a complete devkit.")
    return member.read()


def read_devkit(root: Path) -> tuple[list[int], dict[int, tuple[str, str]]] | None:
    """(validation ILSVRC2012_IDs in file-name order, {ILSVRC2012_ID: (wnid, words)} of the leaf synsets),
    from the extracted devkit or its archive; None when there is no devkit."""
    folder, archive = root / DEVKIT_NAME, root / f"{DEVKIT_NAME}.tar.gz"
    if folder.is_dir():
        truth, meta = (folder / GROUND_TRUTH).read_bytes(), (folder / META).read_bytes()
    elif archive.is_file():
        with tarfile.open(archive) as tar:
            truth, meta = (_archived_file(tar, archive, name) for name in (GROUND_TRUTH, META))
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
            f"(accepted: {ACCEPTED}), or run experiment=smoke (the sample dataset, made on first use) to try the "
            "pipeline without ImageNet."
        )
    train_dir, val_dir = root / "train", root / "val"
    train_tar, val_tar = root / TRAIN_ARCHIVE, root / VAL_ARCHIVE
    if not (train_dir.is_dir() or train_tar.is_file()) or not (val_dir.is_dir() or val_tar.is_file()):
        found = sorted(p.name for p in root.iterdir())[:20]
        raise LayoutError(f"Layout of data.root={root} not recognised: found {found}. Accepted: {ACCEPTED}.")
    members: dict[str, Member] = {}
    oddities: list[dict[str, str]] = []
    wnids, train, train_form = _discover_train(root, members, oddities)
    devkit = read_devkit(root)
    class_names = list(wnids)
    if devkit is not None:
        leaves = dict(devkit[1].values())
        class_names = [leaves.get(w, w) for w in wnids]
        if set(leaves) != set(wnids):
            train_source = train_dir if train_dir.is_dir() else train_tar
            raise LayoutError(
                f"The devkit under {root} names {len(leaves)} classes but {train_source} has {len(wnids)} "
                f"classes, and they differ (e.g. {sorted(set(leaves) ^ set(wnids))[:3]}). Use the devkit that "
                "belongs to this training set."
            )
    val, val_form = _discover_val(root, {wnid: i for i, wnid in enumerate(wnids)}, devkit, members, oddities)
    if not train or not val:
        raise LayoutError(f"No images found under {root} (train: {len(train)}, val: {len(val)}).")
    return Layout(root, wnids, class_names, train, val, train_form + val_form, members, oddities)


def _discover_train(root: Path, members: dict, oddities: list) -> tuple[list[str], list[tuple[str, int]], str]:
    """(sorted wnids, [(item path, class index), ...], the form's words) of train/ or the training archive, whose
    members are added to `members`; a class without images is refused."""
    train_dir, train_tar = root / "train", root / TRAIN_ARCHIVE
    if train_dir.is_dir():
        folders, loose = _class_folders(train_dir, root, oddities)
        for path in loose:
            _odd(oddities, root, path, "an image directly in train/, outside the class folders: not read")
        per_class = {wnid: [str(p.relative_to(root)) for p in images] for wnid, images in folders.items()}
        if not per_class:
            raise LayoutError(f"{train_dir} has no class folders (train/<wnid>/*.JPEG). Accepted: {ACCEPTED}.")
        form = ""
    else:
        indexed = _train_archive(train_tar, oddities)
        if not indexed:
            raise LayoutError(f"{train_tar} holds no per-class archives (<wnid>.tar): is it the official file?")
        per_class = {wnid: [path for path, _ in items] for wnid, items in indexed.items()}
        members.update(item for items in indexed.values() for item in items)
        form = "train archive, "
    empty = [wnid for wnid, items in per_class.items() if not items]
    if empty:
        where = [str(train_dir / w) if train_dir.is_dir() else f"{train_tar}/{w}.tar" for w in empty[:5]]
        raise LayoutError(
            f"{len(empty)} training class folder(s) hold no image: {where}. A class without training images "
            "cannot be learned and would shift the index of every class after it: remove the empty folder (or "
            "class archive), or put its images back."
        )
    wnids = sorted(per_class)
    return wnids, [(path, index) for index, wnid in enumerate(wnids) for path in per_class[wnid]], form


def _discover_val(
    root: Path, index: dict[str, int], devkit: tuple | None, members: dict, oddities: list
) -> tuple[list[tuple[str, int]], str]:
    """([(item path, class index), ...], the form's words) of val/ (class folders, or flat and labelled by the
    devkit) or the validation archive (labelled by the devkit), whose members are added to `members`."""
    val_dir, val_tar = root / "val", root / VAL_ARCHIVE
    val_classes, loose = _class_folders(val_dir, root, oddities) if val_dir.is_dir() else ({}, [])
    if val_classes:
        if loose:  # a flat val/ with a stray folder would otherwise be read as that folder's images alone
            raise LayoutError(
                f"{val_dir} holds {len(loose)} images directly in it and {len(val_classes)} folder(s) "
                f"({sorted(val_classes)[:3]}): it is either flat (labelled by the devkit) or class folders "
                "(val/<wnid>/*.JPEG), not both. Move the folders out of it, or sort every image into its class folder."
            )
        unknown = [name for name in val_classes if name not in index]
        if unknown:
            raise LayoutError(f"{val_dir} has class folders that the training set lacks: {unknown[:5]}")
        val = [(str(p.relative_to(root)), index[name]) for name, images in val_classes.items() for p in images]
        for name, images in val_classes.items():
            if not images:
                _odd(oddities, root, val_dir / name, "an empty class folder: no validation images of this class")
        return val, "class folders"
    val_source = val_dir if val_dir.is_dir() else val_tar
    if devkit is None:
        raise LayoutError(
            f"{val_source} is flat but no devkit labels it: put {DEVKIT_NAME}/ (extracted) or "
            f"{DEVKIT_NAME}.tar.gz in {root}, or sort val/ into class folders. Accepted: {ACCEPTED}."
        )
    if val_dir.is_dir():
        files = [str(p.relative_to(root)) for p in loose]
        form = "flat val with devkit"
    else:
        found = _flat_archive(val_tar, oddities)
        members.update(found)
        files = [path for path, _ in found]
        form = "val archive with devkit"
    ids, leaves = devkit
    if len(files) != len(ids):
        raise LayoutError(
            f"{val_source} has {len(files)} images but the devkit's ground truth has {len(ids)} labels; "
            "the validation set is incomplete or the devkit is for another set."
        )
    return [(path, index[leaves[i][0]]) for path, i in zip(files, ids, strict=True)], form


def source_fingerprint(root: str | Path) -> dict:
    """What discover() reads under root, told apart without reading an image and without times or absolute
    paths, so that a byte-identical copy elsewhere (cp -r, rsync without times, extracted afresh) has the same
    fingerprint, and a touched folder keeps it:
      - train/ and val/: each image's path relative to root and its size, class folder by class folder (what
        discover() lists: one stat per image);
      - the archives: each one's name and size, and the names and sizes of its members (the per-class tars of
        the training archive, the images of the validation archive: their headers, not their contents);
      - the devkit (its labels): the checksum of its files' bytes, a few MB.
    It does not see an image rewritten with other bytes of the same size, nor one inside a per-class tar of the
    training archive whose tar keeps its size (tar rounds members up to 512-byte blocks)."""
    root = Path(root)
    digest, entries = hashlib.sha256(), 0

    def listed(name: str, what: int | str) -> None:
        nonlocal entries
        digest.update(f"{name}\t{what}\n".encode())
        entries += 1

    for name in (TRAIN_ARCHIVE, VAL_ARCHIVE):
        if (root / name).is_file():
            listed(name, (root / name).stat().st_size)
            with tarfile.open(root / name, "r:") as tar:  # headers only: tarfile seeks over each member's data
                for member in tar:
                    listed(f"{name}/{member.name}", member.size)
    devkit = [root / f"{DEVKIT_NAME}.tar.gz", root / DEVKIT_NAME / GROUND_TRUTH, root / DEVKIT_NAME / META]
    for path in devkit:
        if path.is_file():
            listed(str(path.relative_to(root)), hashlib.sha256(path.read_bytes()).hexdigest())
    for split in ("train", "val"):
        if (root / split).is_dir():
            classes, loose = _class_folders(root / split, root, [])
            # paths joined as strings: pathlib's relative_to would take more time than the stat
            for path in loose:
                listed(f"{split}/{path.name}", os.stat(path).st_size)
            for name, images in sorted(classes.items()):
                listed(f"{split}/{name}", "class folder")  # an empty one too: it would be a class
                for path in images:
                    listed(f"{split}/{name}/{path.name}", os.stat(path).st_size)
    return {"fingerprint": digest.hexdigest()[:16], "entries": entries}

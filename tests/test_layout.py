"""Section 2 and the label trap (docs/paper.md, "The label trap"): finding ILSVRC in its usual forms and labelling
it in sorted-WNID order."""

import io
import os
import re
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from alexnet.data.layout import LayoutError, discover, open_item
from alexnet.data.sample import SampleSpec, make_sample


def jpeg(path, colour=(200, 30, 30), size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def devkit_files(id_to_wnid: dict[int, str], truth: list[int]) -> dict[str, bytes]:
    """An independent, hand-written devkit: meta.mat (leaves plus one inner node) and the ground truth."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height"]
    synsets = np.zeros((len(id_to_wnid) + 1,), dtype=[(f, object) for f in fields])
    for row, (i, w) in enumerate(sorted(id_to_wnid.items())):
        synsets[row] = (i, w, f"words of {w}", "", 0, np.zeros((0,)), 0)
    synsets[-1] = (99, "n00000000", "entity", "", 3, np.array([1, 2, 3]), 5)
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return {
        "ILSVRC2012_devkit_t12/data/meta.mat": buffer.getvalue(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": "".join(f"{i}\n" for i in truth).encode(),
    }


def write_devkit(root, files: dict[str, bytes]) -> None:
    """The devkit extracted under root, as ILSVRC2012_devkit_t12/."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def pack_devkit(root, files: dict[str, bytes]) -> None:
    """The devkit under root as it is downloaded, ILSVRC2012_devkit_t12.tar.gz."""
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# A hand-worked example: IDs are not in sorted-WNID order (as in the real meta.mat, where ID 1 is n02119789).
ID_TO_WNID = {1: "n03000003", 2: "n01000001", 3: "n02000002"}
TRUTH = [1, 3, 2, 1, 2]  # ground truth of val images 1..5, in file-name order
# Sorted WNIDs: n01000001 -> 0, n02000002 -> 1, n03000003 -> 2. So ID 1 -> 2, ID 2 -> 0, ID 3 -> 1:
EXPECTED_VAL = [2, 1, 0, 2, 0]
OTHER_ID_TO_WNID = {1: "n03000003", 2: "n01000001", 3: "n09999999"}  # a devkit of another class set


def make_train(root, per_class=(2, 1, 3)):
    for wnid, count in zip(sorted(ID_TO_WNID.values()), per_class, strict=True):
        for i in range(count):
            jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG")


def test_class_folder_layout(tmp_path):
    make_train(tmp_path)
    for wnid, count in zip(sorted(ID_TO_WNID.values()), (1, 2, 1), strict=True):
        for i in range(count):
            jpeg(tmp_path / "val" / wnid / f"v{i}.JPEG")
    layout = discover(tmp_path)
    assert layout.form == "class folders"
    assert layout.wnids == ["n01000001", "n02000002", "n03000003"]
    assert [label for _, label in layout.train] == [0, 0, 1, 2, 2, 2]
    assert layout.val == [
        ("val/n01000001/v0.JPEG", 0),
        ("val/n02000002/v0.JPEG", 1),
        ("val/n02000002/v1.JPEG", 1),
        ("val/n03000003/v0.JPEG", 2),
    ]
    assert layout.class_names == layout.wnids  # no devkit: names are the WNIDs


@pytest.mark.parametrize("packed", [False, True])
def test_flat_val_is_labelled_through_the_devkit(tmp_path, packed):
    make_train(tmp_path)
    for n in range(1, 6):
        jpeg(tmp_path / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    files = devkit_files(ID_TO_WNID, TRUTH)
    (pack_devkit if packed else write_devkit)(tmp_path, files)
    layout = discover(tmp_path)
    assert layout.form == "flat val with devkit"
    assert [label for _, label in layout.val] == EXPECTED_VAL
    assert layout.val[0][0] == "val/ILSVRC2012_val_00000001.JPEG"
    assert layout.class_names == ["words of n01000001", "words of n02000002", "words of n03000003"]


def test_missing_root_says_how_to_point_data_root_at_imagenet_or_to_run_the_smoke_experiment(tmp_path):
    # experiment=smoke, not data=sample: data=sample under experiment=full is refused for its class count
    with pytest.raises(LayoutError, match=r"data\.root=.*does not exist.* run experiment=smoke \(the sample"):
        discover(tmp_path / "nowhere")


def test_unrecognised_layout_says_what_was_found_and_what_is_accepted(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("x")
    with pytest.raises(LayoutError, match=r"found \['images', 'labels.csv'\]. Accepted: train/<wnid>"):
        discover(tmp_path)
    for n in range(25):
        (tmp_path / f"z{n:02d}").mkdir()
    first_20 = ["images", "labels.csv", *(f"z{n:02d}" for n in range(18))]
    with pytest.raises(LayoutError, match=re.escape(f"found {first_20}. Accepted")):
        discover(tmp_path)


@pytest.mark.parametrize("present", ["train", "val"])
def test_a_root_with_only_one_split_is_not_recognised(tmp_path, present):
    jpeg(tmp_path / present / "n01000001" / "x.JPEG")
    with pytest.raises(LayoutError, match=rf"not recognised: found \['{present}'\]"):
        discover(tmp_path)


def test_validation_class_folders_that_training_lacks_are_refused(tmp_path):
    make_train(tmp_path)
    jpeg(tmp_path / "val" / "n01000001" / "v0.JPEG")
    jpeg(tmp_path / "val" / "n05000005" / "v0.JPEG")
    with pytest.raises(LayoutError, match=r"class folders that the training set lacks: \['n05000005'\]"):
        discover(tmp_path)


def test_validation_class_folders_without_any_image_are_refused(tmp_path):
    make_train(tmp_path)
    for wnid in ID_TO_WNID.values():
        (tmp_path / "val" / wnid).mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"No images found under .* \(train: 6, val: 0\)"):
        discover(tmp_path)


def test_flat_val_without_devkit_is_an_error(tmp_path):
    make_train(tmp_path)
    jpeg(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(LayoutError, match=re.escape(f"{tmp_path / 'val'} is flat but no devkit")):
        discover(tmp_path)


def test_a_val_archive_without_devkit_is_an_error_naming_the_archive(sample_root, tmp_path):
    root = official_archives(sample_root, tmp_path / "archives")
    (root / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    with pytest.raises(LayoutError, match=re.escape(f"{root / 'ILSVRC2012_img_val.tar'} is flat but no devkit")):
        discover(root)


def test_what_is_not_read_in_a_flat_val_is_listed(tmp_path):
    make_train(tmp_path)
    for n in range(1, 6):
        jpeg(tmp_path / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    write_devkit(tmp_path, devkit_files(ID_TO_WNID, TRUTH))
    (tmp_path / "val" / "notes.txt").write_text("not an image")
    layout = discover(tmp_path)
    assert [label for _, label in layout.val] == EXPECTED_VAL
    not_read = {"path": "val/notes.txt", "reason": "not an image (only .jpeg/.jpg/.png files are read)"}
    assert layout.oddities == [not_read]
    for stray in ("extra", "n01000001"):  # any folder, a class's too, would make val/ class folders
        jpeg(tmp_path / "val" / stray / "v0.JPEG")
        with pytest.raises(
            LayoutError, match=rf"val holds 5 images directly in it and 1 folder\(s\) \(\['{stray}'\]\)"
        ):
            discover(tmp_path)
        shutil.rmtree(tmp_path / "val" / stray)


def test_label_count_mismatch_is_an_error(tmp_path):
    make_train(tmp_path)
    for n in range(1, 4):  # 3 images, 5 labels
        jpeg(tmp_path / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    write_devkit(tmp_path, devkit_files(ID_TO_WNID, TRUTH))
    with pytest.raises(LayoutError, match="3 images but the devkit's ground truth has 5 labels"):
        discover(tmp_path)


def test_devkit_for_other_classes_is_an_error(tmp_path):
    make_train(tmp_path)
    (tmp_path / "val").mkdir()
    write_devkit(tmp_path, devkit_files(OTHER_ID_TO_WNID, TRUTH))
    with pytest.raises(LayoutError, match=re.escape(f"but {tmp_path / 'train'} has 3 classes, and they differ")):
        discover(tmp_path)


def test_a_devkit_for_other_classes_than_the_train_archive_is_an_error_naming_the_archive(sample_root, tmp_path):
    root = official_archives(sample_root, tmp_path / "archives")
    pack_devkit(root, devkit_files(OTHER_ID_TO_WNID, TRUTH))
    train_tar = root / "ILSVRC2012_img_train.tar"
    with pytest.raises(LayoutError, match=re.escape(f"but {train_tar} has 6 classes, and they differ")):
        discover(root)


def test_sample_dataset_is_in_the_real_layout(sample_root):
    layout = discover(sample_root)
    assert layout.form == "flat val with devkit"
    assert layout.num_classes == 6
    assert len(layout.train) == 36 and len(layout.val) == 18
    assert sorted(np.bincount([label for _, label in layout.val])) == [3] * 6


def test_each_sample_class_has_its_own_stripe_orientation_evenly_spaced_over_half_a_turn(sample_root):
    """Measured as the peak of each validation image's spectrum: within 0.2 rad of pi * label / classes."""
    layout = discover(sample_root)
    for path, label in layout.val:
        gray = np.asarray(Image.open(sample_root / path).convert("L"), dtype=float)
        spectrum = np.abs(np.fft.fft2(gray - gray.mean()))
        y, x = np.unravel_index(np.argmax(spectrum), spectrum.shape)
        angle = np.arctan2(np.fft.fftfreq(gray.shape[0])[y], np.fft.fftfreq(gray.shape[1])[x])
        off = (angle - np.pi * label / layout.num_classes + np.pi / 2) % np.pi - np.pi / 2  # stripes: modulo pi
        assert abs(off) < 0.2, (path, label, off)


def test_a_sample_dataset_is_made_once_and_another_spec_is_refused_in_its_folder(tmp_path):
    spec = SampleSpec(classes=2, train_per_class=2, val_per_class=1, scale=0.2)
    root = make_sample(tmp_path / "sample", spec)
    files = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    assert make_sample(root, spec) == root
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()} == files
    other = SampleSpec(classes=2, train_per_class=2, val_per_class=1, scale=0.2, seed=1)
    with pytest.raises(LayoutError, match=re.escape(f"holds the sample dataset {spec}, not the data.sample asked for")):
        make_sample(root, other)


def official_archives(sample_root, root):
    """The sample dataset packed as ILSVRC-2012 is downloaded: a train tar holding one uncompressed tar per
    class, a flat val tar, and the devkit's .tar.gz; nothing extracted."""
    root.mkdir(parents=True)
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as outer:
        for class_dir in sorted((sample_root / "train").iterdir()):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for image in sorted(class_dir.iterdir(), reverse=True):  # members in any order
                    tar.add(image, arcname=image.name)
            info = tarfile.TarInfo(f"{class_dir.name}.tar")
            info.size = inner.tell()
            inner.seek(0)
            outer.addfile(info, inner)
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
        for image in sorted((sample_root / "val").iterdir()):
            tar.add(image, arcname=image.name)
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(sample_root / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    return root


def by_file_name(items):
    return [(path.rsplit("/", 1)[-1], label) for path, label in items]


def test_official_archives_are_read_in_place_with_the_same_labels_as_extracted_folders(sample_root, tmp_path):
    folders = discover(sample_root)
    archives = discover(official_archives(sample_root, tmp_path / "archives"))
    assert archives.form == "train archive, val archive with devkit"
    assert archives.wnids == folders.wnids and archives.class_names == folders.class_names
    assert by_file_name(archives.train) == by_file_name(folders.train)
    assert by_file_name(archives.val) == by_file_name(folders.val)
    assert archives.train[0][0] == "ILSVRC2012_img_train.tar/n09000000.tar/n09000000_0.JPEG"
    assert not list((tmp_path / "archives").glob("*/"))  # nothing extracted
    for path, _ in archives.train[:3] + archives.val[:3]:
        member = archives.members[path]
        folder = f"train/{path.split('/')[1].removesuffix('.tar')}" if "img_train" in member.archive else "val"
        item = open_item(tmp_path / "archives", path, member).read()
        assert item == (sample_root / folder / path.rsplit("/", 1)[-1]).read_bytes()  # those bytes, nothing after


def with_link(class_archive: bytes, name: str, target: str) -> bytes:
    buffer = io.BytesIO(class_archive)
    with tarfile.open(fileobj=buffer, mode="a") as tar:
        link = tarfile.TarInfo(name)
        link.type, link.linkname = tarfile.SYMTYPE, target
        tar.addfile(link)
    return buffer.getvalue()


def test_stray_members_of_the_train_archive_are_listed_and_every_class_after_them_is_read(sample_root, tmp_path):
    root = official_archives(sample_root, tmp_path / "archives")
    with tarfile.open(root / "ILSVRC2012_img_train.tar") as original:
        classes = [(info, original.extractfile(info).read()) for info in original]
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as outer:
        readme = tarfile.TarInfo("README.txt")
        readme.size = 2
        outer.addfile(readme, io.BytesIO(b"hi"))  # before every class archive
        for info, data in classes:
            if info.name == "n09000000.tar":
                data = with_link(data, "n09000000_link.JPEG", "n09000000_0.JPEG")
                info.size = len(data)
            outer.addfile(info, io.BytesIO(data))
    layout = discover(root)
    assert layout.oddities == [
        {"path": "ILSVRC2012_img_train.tar/README.txt", "reason": "not a per-class <wnid>.tar: not read"},
        {
            "path": "ILSVRC2012_img_train.tar/n09000000.tar/n09000000_link.JPEG",
            "reason": "not a regular file in the archive: not read",
        },
    ]
    assert by_file_name(layout.train) == by_file_name(discover(sample_root).train)


def test_an_extracted_train_folder_and_the_val_archive_mix(sample_root, tmp_path):
    root = official_archives(sample_root, tmp_path / "mixed")
    (root / "ILSVRC2012_img_train.tar").unlink()
    (root / "train").symlink_to(sample_root / "train")
    layout = discover(root)
    assert layout.form == "val archive with devkit"
    assert by_file_name(layout.val) == by_file_name(discover(sample_root).val)
    assert all(path in layout.members for path, _ in layout.val) and not any(
        p in layout.members for p, _ in layout.train
    )


def test_a_train_archive_without_class_archives_is_refused(sample_root, tmp_path):
    root = official_archives(sample_root, tmp_path / "bad")
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as tar:  # JPEGs directly, not one tar per class
        tar.add(sample_root / "val" / "ILSVRC2012_val_00000001.JPEG", arcname="ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(LayoutError, match=r"ILSVRC2012_img_train.tar holds no per-class archives"):
        discover(root)


def test_what_is_not_read_is_listed_with_the_reason(tmp_path):
    make_train(tmp_path)
    for wnid in sorted(ID_TO_WNID.values())[:2]:
        jpeg(tmp_path / "val" / wnid / "v0.JPEG")
    (tmp_path / "val" / "n03000003").mkdir()  # an empty validation class folder: reported
    first = tmp_path / "train" / "n01000001"
    (first / "notes.txt").write_text("not an image")
    (first / "loop.JPEG").symlink_to(first / "loop.JPEG")
    (first / "gone.JPEG").symlink_to(tmp_path / "nowhere.JPEG")
    (first / "extra").mkdir()
    os.mkfifo(first / "pipe.JPEG")
    jpeg(tmp_path / "train" / "stray.JPEG")
    (tmp_path / "train" / "README.txt").write_text("not an image")
    layout = discover(tmp_path)
    assert [label for _, label in layout.train] == [0, 0, 1, 2, 2, 2], "only the real images, in the usual classes"
    assert layout.wnids == sorted(ID_TO_WNID.values())
    reasons = {odd["path"]: odd["reason"] for odd in layout.oddities}
    assert reasons == {
        "train/n01000001/extra": "a folder inside a class folder: not read",
        "train/n01000001/gone.JPEG": "a broken symlink (No such file or directory)",
        "train/n01000001/loop.JPEG": "a symlink loop",
        "train/n01000001/notes.txt": "not an image (only .jpeg/.jpg/.png files are read)",
        "train/n01000001/pipe.JPEG": "neither a file nor a folder",
        "train/README.txt": "not an image (only .jpeg/.jpg/.png files are read)",
        "train/stray.JPEG": "an image directly in train/, outside the class folders: not read",
        "val/n03000003": "an empty class folder: no validation images of this class",
    }


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_an_empty_training_class_folder_is_refused_naming_it(tmp_path, content):
    make_train(tmp_path)
    (tmp_path / "val").mkdir()
    empty = tmp_path / "train" / "n01500000"
    empty.mkdir()
    if content:  # a folder of files that are not images is as empty
        (empty / content).write_text("x")
    with pytest.raises(LayoutError, match=r"1 training class folder\(s\) hold no image: \['.*train/n01500000'\]"):
        discover(tmp_path)


def test_an_empty_class_archive_is_refused_and_stray_members_are_listed(sample_root, tmp_path):
    root = official_archives(sample_root, tmp_path / "archives")
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "a") as outer:
        empty = io.BytesIO()
        tarfile.open(fileobj=empty, mode="w").close()
        info = tarfile.TarInfo("n09999999.tar")
        info.size = empty.tell()
        empty.seek(0)
        outer.addfile(info, empty)
    with pytest.raises(LayoutError, match=r"ILSVRC2012_img_train.tar/n09999999.tar"):
        discover(root)
    root = official_archives(sample_root, tmp_path / "stray")
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "a") as tar:
        info = tarfile.TarInfo("README.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layout = discover(root)
    assert layout.oddities == [
        {"path": "ILSVRC2012_img_val.tar/README.txt", "reason": "not an image in the archive: not read"}
    ]
    assert len(layout.val) == 18


def test_the_fingerprint_tells_datasets_apart_by_their_listing_without_reading_images(sample_root, tmp_path):
    from alexnet.data.layout import source_fingerprint

    archives = official_archives(sample_root, tmp_path / "archives")
    assert source_fingerprint(sample_root) == source_fingerprint(sample_root)
    # What is listed: 6 class folders and their 36 images, the 18 images of the flat val/, the devkit's 2 files.
    assert source_fingerprint(sample_root)["entries"] == 62
    # the train tar and its 6 class tars, the val tar and its 18 images, the devkit's .tar.gz
    assert source_fingerprint(archives)["entries"] == 27
    assert source_fingerprint(sample_root)["fingerprint"] != source_fingerprint(archives)["fingerprint"]
    before = source_fingerprint(archives)
    val_tar = archives / "ILSVRC2012_img_val.tar"
    with open(val_tar, "ab") as f:  # a different val archive of the same name
        f.write(b"\0" * 512)
    assert source_fingerprint(archives)["fingerprint"] != before["fingerprint"]
    make_train(tmp_path / "folders")
    before = source_fingerprint(tmp_path / "folders")
    os.utime(tmp_path / "folders" / "train" / "n02000002", ns=(0, 1))  # times are not the content
    assert source_fingerprint(tmp_path / "folders") == before
    jpeg(tmp_path / "folders" / "train" / "n02000002" / "added.JPEG")  # one more image in one class
    assert source_fingerprint(tmp_path / "folders")["fingerprint"] != before["fingerprint"]
    before = source_fingerprint(tmp_path / "folders")
    jpeg(tmp_path / "folders" / "train" / "n04000004" / "x.JPEG")  # a new class
    assert source_fingerprint(tmp_path / "folders")["fingerprint"] != before["fingerprint"]
    jpeg(tmp_path / "folders" / "val" / "n02000002" / "v0.JPEG")
    before = source_fingerprint(tmp_path / "folders")
    jpeg(tmp_path / "folders" / "val" / "n02000002" / "v1.JPEG")  # one more validation image
    assert source_fingerprint(tmp_path / "folders")["fingerprint"] != before["fingerprint"]
    before = source_fingerprint(tmp_path / "folders")
    image = tmp_path / "folders" / "val" / "n02000002" / "v1.JPEG"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))  # other bytes of the same size: what the listing cannot see (docs/data.md)
    assert source_fingerprint(tmp_path / "folders") == before

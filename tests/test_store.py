"""A store that proves itself: its manifest checked against its own checksum and against itself, every small file
by content at every open, the source told apart by its listing (not times or paths), stores of the previous
version upgraded in place, a JPEG store read with a bounded number of open files."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xxhash

from alexnet.base.atomic import json_bytes
from alexnet.data.layout import LayoutError, source_fingerprint
from alexnet.data.prepare import prepare
from alexnet.data.store import (
    Store,
    StoreError,
    encode_jpeg_chunk,
    jpeg_chunk_index,
    jpeg_chunk_path,
    jpeg_index_path,
    write_manifest,
)
from alexnet.data.upgrade import upgrade
from alexnet.data.verify import verify
from alexnet.training.resume import disagreements
from fast_run import ROOT
from test_layout import official_archives
from test_prepare import all_files_of, flip_bit, noise_image, tiny_sample


@pytest.fixture
def copy_of(tmp_path):
    def copy(store, name="copy"):
        return shutil.copytree(store, tmp_path / name)

    return copy


def manifest_of(store) -> dict:
    return json.loads((store / "manifest.json").read_text())


def refused_at_open_and_by_verify(store, pattern: str) -> None:
    with pytest.raises(StoreError, match=pattern):
        Store.open(store)
    with pytest.raises(StoreError, match=pattern):
        verify(store, progress_bar=False)


def test_one_bit_of_the_manifest_changed_is_caught_by_opening_and_by_verify(sample_store, copy_of):
    store = copy_of(sample_store)
    path = store / "manifest.json"
    data = path.read_bytes()
    at = data.index(b'"num_classes": 6') + len('"num_classes": ')
    path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])  # one bit: "6" is 0x36, "7" is 0x37
    assert b'"num_classes": 7' in path.read_bytes()
    refused_at_open_and_by_verify(store, r"manifest\.json is damaged: its bytes differ from the checksum")
    edited = manifest_of(sample_store)
    del edited["files"]["train_images.npy"]  # its entry deleted by hand: the manifest's checksum is the old one
    path.write_bytes(json_bytes(edited))
    refused_at_open_and_by_verify(store, r"manifest\.json is damaged")


def test_a_manifest_that_contradicts_itself_is_refused_even_with_a_matching_checksum(sample_store, copy_of):
    """Written as the code writes a manifest, checksum and all: what it says is cross-checked."""
    store, manifest = copy_of(sample_store), manifest_of(sample_store)
    write_manifest(store, {**manifest, "num_classes": 7})
    refused_at_open_and_by_verify(store, r"contradicts itself: num_classes 7, but 6 WNIDs and 6 class names")
    files = {name: entry for name, entry in manifest["files"].items() if name != "train_images.npy"}
    write_manifest(store, {**manifest, "files": files})
    refused_at_open_and_by_verify(store, r"contradicts itself: no entry for train_images\.npy, which the store needs")


@pytest.mark.parametrize("damage", ["truncated", "not utf-8", "not an object"])
def test_a_manifest_that_does_not_parse_is_a_store_error_naming_it(sample_store, copy_of, damage):
    store = copy_of(sample_store)
    path = store / "manifest.json"
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "not utf-8": b"\xff" + data[1:], "not an object": b"[]\n"}[damage]
    )
    refused_at_open_and_by_verify(store, rf"{re.escape(str(path))} is damaged: not (readable JSON|a manifest)")


@pytest.mark.parametrize(
    "name",
    [
        "train_labels.npy",
        "val_labels.npy",
        "mean.npy",
        "pca.json",
        "train_image_digests.npy",
        "val_image_digests.npy",
        "train_jpeg_index.npy",
        "val_jpeg_index.npy",
    ],
)
def test_a_flipped_byte_in_any_small_file_stops_the_store_from_opening_naming_it(request, sample_store, copy_of, name):
    store = copy_of(request.getfixturevalue("jpeg_store") if "jpeg" in name else sample_store)
    flip_bit(store / name, (store / name).stat().st_size - 1)  # the last label, pixel, digest, offset or brace
    with pytest.raises(StoreError, match=rf"damaged: {re.escape(name)}: the bytes differ from those prepared"):
        Store.open(store)


def test_labels_that_contradict_the_manifest_are_refused(sample_store, copy_of):
    """Labels out of range, written with a matching checksum (as a bug in preparation would)."""
    store = copy_of(sample_store)
    manifest = manifest_of(store)
    labels = np.load(store / "val_labels.npy")
    labels[0] = 6
    np.save(store / "val_labels.npy", labels)
    data = (store / "val_labels.npy").read_bytes()
    manifest["files"]["val_labels.npy"]["xxh3"] = xxhash.xxh3_128_hexdigest(data)
    write_manifest(store, manifest)
    with pytest.raises(StoreError, match=r"val_labels\.npy has labels outside -1\.\.5"):
        Store.open(store)


def test_verify_reports_a_damaged_digests_file_once_and_what_it_still_checks(sample_store, copy_of):
    store = copy_of(sample_store)
    flip_bit(store / "train_image_digests.npy", (store / "train_image_digests.npy").stat().st_size - 3)
    header = np.load(store / "val_images.npy", mmap_mode="r").offset
    flip_bit(store / "val_images.npy", header + 2 * 256 * 256 * 3 + 7)  # slot 2 of val: still checked
    assert verify(store, progress_bar=False) == [
        "train_image_digests.npy: the bytes differ from those prepared (checksum mismatch)",
        "train_images.npy: not checked image by image, since its digests file train_image_digests.npy is damaged; "
        "its size is as prepared",
        f"val_images.npy (slots 2-2, bytes {header + 2 * 196608:,}-{header + 3 * 196608 - 1:,}): the images differ "
        "from those prepared (checksum mismatch)",
    ]


def test_verify_reads_the_images_without_keeping_them_resident(tmp_path):
    """128 MB of images verified in a process of its own: its peak resident memory grows by the read buffer (12
    MB), not by the file (through a memory map, every page read stays resident until the kernel needs it)."""
    script = textwrap.dedent(
        f"""
        import resource, numpy as np
        from pathlib import Path
        from alexnet.data.verify import _verify_images
        from alexnet.data.store import image_digest
        root = Path({str(tmp_path)!r})
        images = np.lib.format.open_memmap(root / "i.npy", "w+", np.uint8, (683, 256, 256, 3))
        digests = np.zeros(683, np.uint64)
        for start in range(0, 683, 64):
            block = np.random.default_rng(start).integers(0, 256, images[start : start + 64].shape, dtype=np.uint8)
            images[start : start + 64] = block
            digests[start : start + 64] = [image_digest(p) for p in block]
        images.flush()
        del images, block
        np.save(root / "d.npy", digests)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert _verify_images(root, "i.npy", root / "d.npy") == []
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 40, f"peak resident memory grew by {done.stdout.strip()} MB"


def test_a_jpeg_store_of_more_chunk_files_than_the_open_file_limit_is_read_in_any_order(tmp_path):
    """300 chunk files, a limit of 128 open files, 3,000 reads in random order by one long-lived reader."""
    chunks = 300
    for chunk in range(chunks):
        pixels = np.full((8, 8, 3), chunk % 256, np.uint8)
        path = jpeg_chunk_path(tmp_path, "train", chunk)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode_jpeg_chunk([pixels]))
    index = np.concatenate([jpeg_chunk_index(jpeg_chunk_path(tmp_path, "train", c), c, 1) for c in range(chunks)])
    np.save(jpeg_index_path(tmp_path, "train"), index.astype(np.int64))
    script = textwrap.dedent(
        f"""
        import resource, numpy as np
        from pathlib import Path
        from alexnet.data.store import JpegReader, decode_jpeg, jpeg_chunk_path
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        reader = JpegReader({str(tmp_path)!r}, "train")
        for slot in np.random.default_rng(0).integers(0, {chunks}, 3000):
            assert abs(int(decode_jpeg(reader.encoded(int(slot))).mean()) - slot % 256) <= 2, slot
        folder = jpeg_chunk_path(Path({str(tmp_path)!r}), "train", 0).parent.resolve()
        print(sum(fd.exists() and fd.resolve().parent == folder for fd in Path("/proc/self/fd").iterdir()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 64, "at most max_open files are open at once"


def test_a_training_class_whose_every_image_is_undecodable_is_refused_naming_it(tmp_path):
    root = tiny_sample(tmp_path / "root")
    wnid = sorted(p.name for p in (root / "train").iterdir())[1]
    for image in (root / "train" / wnid).iterdir():
        image.write_bytes(b"not a JPEG")
    with pytest.raises(
        LayoutError, match=rf"1 training class\(es\) .* no image that can be decoded: train/{wnid} \(e\.g\."
    ):
        prepare(root, tmp_path / "store", image_size=32, workers=1, progress_bar=False)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_training_classes_without_a_readable_image_are_refused_up_to_the_last_class_naming_the_first_five(tmp_path):
    root = tiny_sample(tmp_path / "root", classes=7)
    wnids = sorted(p.name for p in (root / "train").iterdir())
    for wnid in wnids[1:]:  # every class but the first, the last included
        for image in (root / "train" / wnid).iterdir():
            image.write_bytes(b"not a JPEG")
    with pytest.raises(LayoutError, match=r"6 training class\(es\)") as refused:
        prepare(root, tmp_path / "store", image_size=32, workers=1, progress_bar=False)
    assert re.findall(r"train/(n\d+) \(e\.g\.", str(refused.value)) == wnids[1:6]


@pytest.mark.parametrize("form", ["folders", "archives"])
def test_a_byte_identical_copy_of_the_source_elsewhere_is_accepted_saying_so(tmp_path, capsys, form):
    root = tiny_sample(tmp_path / "made")
    if form == "archives":
        root = official_archives(root, tmp_path / "tars")
    store = tmp_path / "store"
    manifest = prepare(root, store, image_size=32, workers=1, progress_bar=False)
    before = all_files_of(store)
    for copy in (
        shutil.copytree(root, tmp_path / "cp_r"),  # new times, as cp -r (without -p) and rsync without -t give
        shutil.copytree(root, tmp_path / "cp_a", copy_function=shutil.copy2),  # the times kept
    ):
        capsys.readouterr()
        assert prepare(copy, store, image_size=32, workers=1, progress_bar=False) == manifest
        said = capsys.readouterr().err.strip().splitlines()
        assert said == [
            f"data.root={copy} lists the same images (names and sizes) as {root}, which data.store_dir={store} "
            "was made from: using the store as it is."
        ]
    os.utime(root / ("train" if form == "folders" else "ILSVRC2012_img_train.tar"))  # touch
    assert prepare(root, store, image_size=32, workers=1, progress_bar=False) == manifest
    assert capsys.readouterr().err == "", "the source it was made from: nothing to say"
    assert all_files_of(store) == before


def changed_copies(root: Path, tmp_path: Path):
    """Copies of the folder layout, each with one change to what discover() reads."""
    images = sorted((root / "train").glob("*/*.JPEG"))

    def copy(name):
        return shutil.copytree(root, tmp_path / name)

    resized = copy("resized")
    noise_image((41, 30)).save(resized / images[0].relative_to(root), "JPEG")
    yield "an image rewritten at another size", resized
    added = copy("added")
    noise_image((40, 30)).save(added / images[0].parent.relative_to(root) / "extra.JPEG", "JPEG")
    yield "an image added", added
    removed = copy("removed")
    (removed / images[0].relative_to(root)).unlink()
    yield "an image removed", removed
    renamed = copy("renamed")
    os.rename(renamed / images[0].relative_to(root), renamed / images[0].relative_to(root).with_name("other.JPEG"))
    yield "an image renamed", renamed
    new_class = copy("new_class")
    (new_class / "train" / "n09999999").mkdir()
    noise_image((40, 30)).save(new_class / "train" / "n09999999" / "x.JPEG", "JPEG")
    yield "a class added", new_class


def test_a_copy_whose_listing_changed_is_refused_naming_the_cheapest_way_out(tmp_path):
    root = tiny_sample(tmp_path / "made")
    store = tmp_path / "store"
    prepare(root, store, image_size=32, workers=1, progress_bar=False)
    before = all_files_of(store)
    for change, copy in changed_copies(root, tmp_path):
        with pytest.raises(StoreError) as refused:
            prepare(copy, store, image_size=32, workers=1, progress_bar=False)
        message = str(refused.value)
        assert re.search(rf"made from {re.escape(str(root))} \(fingerprint \w+\), not from data\.root={copy}", message)
        assert message.index("data.root unset") < message.index("verify=true") < message.index("prepare again"), change
    assert all_files_of(store) == before


def test_the_fingerprint_sees_the_devkits_labels_and_the_members_of_the_archives(tmp_path):
    root = tiny_sample(tmp_path / "made")
    fingerprint = source_fingerprint(root)["fingerprint"]
    truth = root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    lines = truth.read_text().split()
    truth.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")  # two labels swapped: the same size
    assert source_fingerprint(root)["fingerprint"] != fingerprint
    tars = official_archives(tiny_sample(tmp_path / "other"), tmp_path / "tars")
    fingerprint = source_fingerprint(tars)["fingerprint"]
    import tarfile

    with tarfile.open(tars / "ILSVRC2012_img_val.tar", "a") as tar:  # one more validation image
        tar.add(next((tmp_path / "other" / "val").iterdir()), arcname="ILSVRC2012_val_99999999.JPEG")
    assert source_fingerprint(tars)["fingerprint"] != fingerprint


def old_store(store: Path) -> bytes:
    """The store's manifest as the previous version wrote it: version 2, no checksum of its own, a fingerprint
    of modification times."""
    manifest = manifest_of(store)
    manifest.pop("manifest_xxh3")
    manifest["store_version"] = 2
    manifest["source"]["fingerprint"] = "0123456789abcdef"
    data = json_bytes(manifest)
    (store / "manifest.json").write_bytes(data)
    return data


def test_a_store_of_the_previous_version_is_upgraded_in_place_without_decoding(tmp_path, monkeypatch):
    root = tiny_sample(tmp_path / "made")
    store = tmp_path / "store"
    prepare(root, store, image_size=32, workers=1, progress_bar=False)
    old = old_store(store)
    before = all_files_of(store)
    with pytest.raises(StoreError, match=rf"store version 2\)\. Upgrade it in place.*data\.store_dir={store} upgrade"):
        Store.open(store)
    with pytest.raises(StoreError, match="upgrade=true"):
        prepare(root, store, image_size=32, workers=1, progress_bar=False)

    import alexnet.data.preprocess as preprocess

    monkeypatch.setattr(preprocess, "load_image", lambda *a: pytest.fail("an image was decoded"))
    copy = shutil.copytree(root, tmp_path / "copy")  # upgraded with a copy of its data.root: the listing matches
    assert "upgraded to version 3 (no image decoded): the listing of data.root" in upgrade(store, copy)
    after = all_files_of(store)
    assert {name: data for name, data in after.items() if name != "manifest.json"} == {
        name: data for name, data in before.items() if name != "manifest.json"
    }, "only the manifest is rewritten"
    opened = Store.open(store)
    assert opened.manifest["upgraded_from"] == {"store_version": 2, "manifest_xxh3": xxhash.xxh3_128_hexdigest(old)}
    assert prepare(root, store, image_size=32, workers=1, progress_bar=False) == opened.manifest
    assert "already" in upgrade(store, root)

    # a run trained on the store before the upgrade resumes on it
    from alexnet.data.datamodule import ImageNetDataModule

    datamodule = ImageNetDataModule(str(root), str(store), image_size=32, crop_size=32)
    datamodule.setup()
    trained = {"model": {}, "optim": {}, "data": {}, "store": {"manifest_xxh3": xxhash.xxh3_128_hexdigest(old)}}
    assert disagreements(trained, {}, {}, {"store_dir": str(store)}, datamodule.store_identity()) == []
    assert datamodule.store_identity()["wnids"] == opened.manifest["wnids"]  # the classes eval.py checks, in order


def test_an_old_store_is_upgraded_without_its_source_and_not_with_another(tmp_path):
    root, other = tiny_sample(tmp_path / "made"), tiny_sample(tmp_path / "other", seed=2)
    store = tmp_path / "store"
    prepare(root, store, image_size=32, workers=1, progress_bar=False)
    old_store(store)
    with pytest.raises(StoreError, match=rf"data\.root={other} does not hold the images .* not upgraded"):
        upgrade(store, other)
    assert "is not there, so its listing is not recorded" in upgrade(store, tmp_path / "nowhere")
    assert prepare(tmp_path / "nowhere", store, image_size=32, workers=1, progress_bar=False)["store_version"] == 3
    with pytest.raises(StoreError, match=r"data\.root unset"):  # where data.root is set: refused until recorded
        prepare(root, store, image_size=32, workers=1, progress_bar=False)
    assert "the listing of data.root" in upgrade(store, root)
    prepare(root, store, image_size=32, workers=1, progress_bar=False)


def test_an_old_store_is_upgraded_from_the_root_it_records_which_is_recorded_resolved(tmp_path, monkeypatch):
    root = tiny_sample(tmp_path / "made")
    store = tmp_path / "store"
    prepare(root, store, image_size=32, workers=1, progress_bar=False)
    old_store(store)
    assert f"the listing of data.root={root.resolve()}" in upgrade(store)  # no data.root given: the recorded one
    assert manifest_of(store)["source"]["root"] == str(root.resolve())
    old_store(store)
    monkeypatch.chdir(tmp_path)
    assert "the listing of data.root=made " in upgrade(store, "made")
    assert manifest_of(store)["source"]["root"] == str(root.resolve())


def test_an_old_store_whose_files_are_damaged_is_not_upgraded(tmp_path):
    root = tiny_sample(tmp_path / "made")
    store = tmp_path / "store"
    prepare(root, store, image_size=32, workers=1, progress_bar=False)
    old = old_store(store)
    (store / "mean.npy").write_bytes((store / "mean.npy").read_bytes()[:-1])
    with pytest.raises(StoreError, match=rf"The store in {store} is damaged \(mean\.npy: .*not upgraded"):
        upgrade(store, root)
    assert (store / "manifest.json").read_bytes() == old


@pytest.mark.slow
def test_the_upgrade_command(tmp_path):
    root = tiny_sample(tmp_path / "made")
    store = tmp_path / "store"
    prepare(root, store, image_size=32, workers=1, progress_bar=False)
    old_store(store)
    command = [sys.executable, str(ROOT / "src" / "prepare.py"), f"data.store_dir={store}", f"data.root={root}"]
    done = subprocess.run([*command, "upgrade=true"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"data.store_dir={store} upgraded to version 3")

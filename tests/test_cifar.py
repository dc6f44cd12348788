"""CIFAR-10 read from each form users have it in (files the tests write), kept as a fingerprinted store, and fed as
raw pixels minus the training set's mean image; bad input is one error naming the file."""

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.data.cifar import CifarError, load, locate, prepare, read
from alexnet.data.cifar_datamodule import CIFAR10DataModule, epoch_order
from cifar_files import NAMES, batch_bytes, images, write_class_folders, write_python_release


@pytest.mark.parametrize("form", ["python-folder", "python-archive", "class-folders"])
def test_each_form_reads_as_the_same_images_labels_and_sorted_classes(tmp_path, form):
    if form == "class-folders":
        root = write_class_folders(tmp_path / "tree", train_count=50, test_count=10)
    else:
        root = write_python_release(tmp_path, per_batch=10, archive=form == "python-archive")
    dataset = read(tmp_path if form != "class-folders" else root)  # a folder holding it, or the tree itself
    assert dataset.form == form
    assert dataset.classes == tuple(sorted(NAMES))
    train_pixels, train_labels = images("train", 50)
    test_pixels, test_labels = images("test", 10)
    if form == "class-folders":  # read class by class: image i of the writer is at its class's place
        order = np.argsort(train_labels, kind="stable")
        train_pixels, train_labels = train_pixels[order], train_labels[order]
        order = np.argsort(test_labels, kind="stable")
        test_pixels, test_labels = test_pixels[order], test_labels[order]
    np.testing.assert_array_equal(dataset.train.images, train_pixels)
    np.testing.assert_array_equal(dataset.train.labels, train_labels)
    np.testing.assert_array_equal(dataset.test.images, test_pixels)
    np.testing.assert_array_equal(dataset.test.labels, test_labels)
    assert dataset.train.images.dtype == np.uint8 and dataset.train.images.shape == (50, 32, 32, 3)


def test_the_release_planes_become_rgb_pixels(tmp_path):
    """The release stores 1024 red values, then green, then blue: one pixel's three values are 1024 apart."""
    root = write_python_release(tmp_path, per_batch=10)
    row = pickle.loads((root / "data_batch_1").read_bytes())[b"data"][0]
    image = read(root).train.images[0]
    assert tuple(image[0, 1]) == (row[1], row[1024 + 1], row[2048 + 1])
    assert tuple(image[2, 3]) == (row[2 * 32 + 3], row[1024 + 2 * 32 + 3], row[2048 + 2 * 32 + 3])


def test_labels_follow_the_sorted_class_names_whatever_order_the_release_lists(tmp_path):
    root = write_python_release(tmp_path, per_batch=10)
    shuffled = NAMES[::-1]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in shuffled]}))
    dataset = read(root)
    labels = images("train", 50)[1]
    assert [dataset.classes[i] for i in dataset.train.labels] == [shuffled[i] for i in labels]


def corrupt(path):
    path.write_bytes(path.read_bytes()[:100])


def missing_test_class(tmp_path):
    root = write_class_folders(tmp_path / "tree", 20, 10)
    for file in (root / "test" / "cat").iterdir():
        file.unlink()
    (root / "test" / "cat").rmdir()
    return root


def other_test_class(tmp_path):
    root = write_class_folders(tmp_path / "tree", 20, 10)
    (root / "test" / "cat").rename(root / "test" / "kitten")
    return root


def empty_class(tmp_path):
    root = write_class_folders(tmp_path / "tree", 20, 10)
    for file in (root / "train" / "dog").iterdir():
        file.unlink()
    return root


def wrong_size(tmp_path):
    from PIL import Image

    root = write_class_folders(tmp_path / "tree", 20, 10)
    Image.new("RGB", (31, 32)).save(root / "train" / "frog" / "0006.png")
    return root


def unreadable_image(tmp_path):
    root = write_class_folders(tmp_path / "tree", 20, 10)
    (root / "train" / "ship" / "0008.png").write_bytes(b"not a png")
    return root


def corrupt_batch(tmp_path):
    root = write_python_release(tmp_path, per_batch=10)
    corrupt(root / "data_batch_3")
    return root


def missing_batch(tmp_path):
    root = write_python_release(tmp_path, per_batch=10)
    (root / "test_batch").unlink()
    return root


def wrong_labels(tmp_path):
    root = write_python_release(tmp_path, per_batch=10)
    pixels, labels = images("train", 10)
    (root / "data_batch_2").write_bytes(batch_bytes(pixels, labels + 5))  # labels up to 14
    return root


def code_in_a_batch(tmp_path):
    """A pickle that would run a command when loaded: refused before it runs."""
    root = write_python_release(tmp_path, per_batch=10)

    class Payload:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {tmp_path / 'ran'}",))

    (root / "data_batch_4").write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}))
    return root


def corrupt_archive(tmp_path):
    path = write_python_release(tmp_path / "a", per_batch=10, archive=True)
    corrupt(path)
    return path


def flipped_archive(tmp_path):
    """One byte changed inside the compressed data: the tar would still read, with wrong pixels; gzip's checksum
    at the end of the stream is what catches it."""
    path = write_python_release(tmp_path / "a", per_batch=10, archive=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (missing_test_class, ["only in train/: ['cat']"]),
        (other_test_class, ["only in train/: ['cat']", "only in test/: ['kitten']"]),
        (empty_class, ["train/dog", "holds no"]),
        (wrong_size, ["0006.png", "31x32"]),
        (unreadable_image, ["0008.png", "not a readable image"]),
        (corrupt_batch, ["data_batch_3", "not a readable CIFAR-10 batch"]),
        (missing_batch, ["lacks test_batch"]),
        (wrong_labels, ["data_batch_2", "'labels'"]),
        (code_in_a_batch, ["data_batch_4", "refused to load"]),
        (corrupt_archive, ["cifar-10-python.tar.gz", "not a readable CIFAR-10 archive"]),
        (flipped_archive, ["cifar-10-python.tar.gz", "not a readable CIFAR-10 archive"]),
    ],
)
def test_bad_input_is_one_error_naming_the_file(tmp_path, make, names):
    root = make(tmp_path)
    with pytest.raises(CifarError) as raised:
        read(root)
    message = str(raised.value)
    assert "\n" not in message
    for name in names:
        assert name in message
    assert not (tmp_path / "ran").exists()


def test_a_root_that_holds_none_of_the_forms_is_refused_naming_them(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CifarError, match="holds neither cifar-10-python.tar.gz"):
        locate(tmp_path / "nothing")
    with pytest.raises(CifarError, match="no such file or folder"):
        locate(tmp_path / "absent")


def test_the_store_is_decoded_once_and_records_its_source_and_fingerprint(tmp_path, monkeypatch):
    root = write_python_release(tmp_path, per_batch=10, archive=True)
    manifest = prepare(root, tmp_path / "store")
    assert manifest["source"]["form"] == "python-archive" and manifest["source"]["path"] == str(root)
    assert manifest["splits"] == {"train": {"images": 50}, "test": {"images": 10}}
    assert manifest["classes"] == sorted(NAMES)

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr("alexnet.data.cifar.read", no_decoding)
    assert prepare(root, tmp_path / "store") == manifest
    again, arrays = load(tmp_path / "store")
    assert again == manifest
    np.testing.assert_array_equal(arrays["test_images"], images("test", 10)[0])


def test_the_fingerprint_is_of_the_images_whatever_file_held_them(tmp_path):
    """The release's folder and its archive: one fingerprint; one pixel changed: another."""
    release = prepare(write_python_release(tmp_path / "r", per_batch=10), tmp_path / "s1")
    root = write_python_release(tmp_path / "r2", per_batch=10)
    pixels, labels = images("train", 50)
    pixels[7, 3, 3, 1] ^= 1
    (root / "data_batch_1").write_bytes(batch_bytes(pixels[:10], labels[:10]))
    changed = prepare(root, tmp_path / "s3")
    assert changed["fingerprint_xxh3"] != release["fingerprint_xxh3"]
    same = prepare(write_python_release(tmp_path / "r3", per_batch=10, archive=True), tmp_path / "s4")
    assert same["fingerprint_xxh3"] == release["fingerprint_xxh3"]


def test_a_store_of_another_source_or_changed_files_is_refused(tmp_path):
    root = write_python_release(tmp_path / "a", per_batch=10)
    prepare(root, tmp_path / "store")
    other = write_class_folders(tmp_path / "tree", 20, 10)
    with pytest.raises(CifarError, match="not from data.root=.*tree: give another data.store_dir"):
        prepare(other, tmp_path / "store")
    pixels, labels = images("train", 9)  # another size, so a file system's coarse times cannot hide it
    (root / "data_batch_5").write_bytes(batch_bytes(pixels, labels))
    with pytest.raises(CifarError, match="its files changed since data.store_dir=.*store was decoded"):
        prepare(root, tmp_path / "store")


def test_a_store_whose_arrays_changed_is_refused_on_load(tmp_path):
    root = write_python_release(tmp_path, per_batch=10)
    prepare(root, tmp_path / "store")
    arrays = load(tmp_path / "store")[1]
    arrays["train_labels"][0] += 1
    np.savez(tmp_path / "store" / "arrays.npz", **arrays)
    with pytest.raises(CifarError, match="differ from those it was written with"):
        load(tmp_path / "store")


def datamodule(tmp_path, **kwargs):
    root = write_python_release(tmp_path, per_batch=10)
    dm = CIFAR10DataModule(str(root), str(tmp_path / "store"), **{"batch_size": 16, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def test_inputs_are_raw_pixels_minus_the_training_mean_image(tmp_path):
    dm = datamodule(tmp_path)
    train, test = images("train", 50)[0].astype(np.float64), images("test", 10)[0].astype(np.float64)
    mean = train.mean(axis=0)  # (32, 32, 3): a mean per pixel and channel, over 0-255 values
    got = dm.tensors["train_images"].permute(0, 2, 3, 1).double().numpy()
    np.testing.assert_allclose(got, train - mean, atol=1e-4)
    np.testing.assert_allclose(dm.tensors["test_images"].permute(0, 2, 3, 1).double().numpy(), test - mean, atol=1e-4)


def test_an_epoch_gives_every_training_image_once_in_an_order_of_the_seed_and_epoch(tmp_path):
    dm = datamodule(tmp_path, seed=3)
    batches = list(dm.train_dataloader())
    assert [len(labels) for _, labels in batches] == [16, 16, 16, 2]  # the last one smaller: none dropped
    seen = torch.cat([images.flatten(1) for images, _ in batches])
    order = epoch_order(50, 3, 0)
    torch.testing.assert_close(seen, dm.tensors["train_images"][order].flatten(1))
    assert sorted(order.tolist()) == list(range(50))
    assert not torch.equal(epoch_order(50, 3, 0), epoch_order(50, 3, 1))
    assert not torch.equal(epoch_order(50, 3, 0), epoch_order(50, 4, 0))
    assert torch.equal(epoch_order(50, 3, 1), epoch_order(50, 3, 1))
    test = list(dm.val_dataloader())
    torch.testing.assert_close(torch.cat([x for x, _ in test]), dm.tensors["test_images"])


def test_the_archive_members_are_read_without_extracting(tmp_path):
    path = write_python_release(tmp_path, per_batch=10, archive=True)
    with tarfile.open(path) as tar:
        assert "cifar-10-batches-py/data_batch_1" in tar.getnames()
    read(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_hidden_folders_and_files_are_neither_classes_nor_images(tmp_path):
    root = write_class_folders(tmp_path / "tree", 20, 10)
    for split in ("train", "test"):
        (root / split / ".ipynb_checkpoints").mkdir()
        (root / split / ".ipynb_checkpoints" / "0000.png").write_bytes(b"x")
    (root / "train" / "cat" / "._0003.png").write_bytes(b"AppleDouble")
    dataset = read(root)
    assert dataset.classes == tuple(sorted(NAMES)) and len(dataset.train.labels) == 20


def test_the_release_is_downloaded_only_when_asked(tmp_path, monkeypatch):
    """data.download=true calls torchvision's downloader (here one that writes the tiny release) when root holds
    no copy; without it, nothing is fetched and the error says how to ask."""
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, download))
            write_python_release(Path(root), per_batch=10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "cifar"
    quiet = CIFAR10DataModule(str(root), str(tmp_path / "s1"))
    with pytest.raises(CifarError, match="add data.download=true"):
        quiet.prepare_data()
    assert calls == []
    asked = CIFAR10DataModule(str(root), str(tmp_path / "s2"), download=True)
    asked.prepare_data()
    assert calls == [(str(root), True)] and asked.manifest["splits"]["train"]["images"] == 50
    CIFAR10DataModule(str(root), str(tmp_path / "s3"), download=True).prepare_data()  # a copy there: no download
    assert len(calls) == 1


def test_a_download_that_fails_is_one_error_saying_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(root, train, download):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(CifarError, match="could not download CIFAR-10 into data.root=.*download cifar-10-python"):
        CIFAR10DataModule(str(tmp_path / "c"), str(tmp_path / "s"), download=True).prepare_data()

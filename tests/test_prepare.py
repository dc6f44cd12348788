"""Section 2's preprocessing into the store: messy files, statistics, resuming, refusing the wrong store."""

import json
import os

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image

from alexnet.data import prepare as prepare_module
from alexnet.data.prepare import UnreadableImageError, load_image, prepare
from alexnet.data.store import Store, StoreError


def noise_image(size, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(500, 375), (300, 600), (257, 256), (120, 90), (2000, 100)])
def test_load_image_equals_torchvision_resize_256_and_centre_crop(tmp_path, size):
    path = tmp_path / "x.png"  # PNG: no JPEG draft decoding, so the comparison is exact
    noise_image(size).save(path)
    expected = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(256)])(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(load_image(path), expected)


def test_messy_files_are_converted(tmp_path):
    colour = (200, 40, 60)
    Image.new("RGB", (400, 300), colour).convert("CMYK").save(tmp_path / "cmyk.JPEG", "JPEG", quality=95)
    Image.new("RGB", (300, 400), colour).save(tmp_path / "png.JPEG", "PNG")  # a PNG named .JPEG
    Image.new("L", (300, 300), 90).save(tmp_path / "gray.JPEG", "JPEG", quality=95)
    Image.new("RGBA", (300, 300), (*colour, 100)).save(tmp_path / "alpha.png")
    for name in ("cmyk.JPEG", "png.JPEG", "alpha.png"):
        pixels = load_image(tmp_path / name)
        assert pixels.shape == (256, 256, 3) and pixels.dtype == np.uint8
        assert np.abs(pixels.reshape(-1, 3).mean(0) - colour).max() < 4, name
    gray = load_image(tmp_path / "gray.JPEG")
    assert gray.shape == (256, 256, 3) and np.abs(gray.astype(int) - 90).max() <= 2


def test_jpeg_draft_decoding_stays_close_to_a_full_decode(tmp_path):
    path = tmp_path / "big.JPEG"
    noise_image((1200, 900), seed=3).resize((300, 225)).resize((1200, 900)).save(path, quality=95)
    full = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(256)])(Image.open(path).convert("RGB")), dtype=float)
    assert np.abs(load_image(path).astype(float) - full).mean() < 3.0


def test_store_lists_the_unreadable_file_and_keeps_the_rest(sample_store, sample_root):
    store = Store.open(sample_store)
    train = store.manifest["splits"]["train"]
    assert train["slots"] == 36 and train["images"] == 35
    assert [s["path"] for s in train["skipped"]] == ["train/n09000035/n09000035_1.JPEG"]
    assert train["skipped"][0]["reason"]
    assert store.manifest["splits"]["val"] == {"images": 18, "slots": 18, "skipped": []}
    labels = store.labels("train")
    assert (labels == -1).sum() == 1 and store.images("train").shape == (36, 256, 256, 3)
    assert store.class_names[0] == "sample class 0"


def test_strict_mode_stops_at_the_unreadable_file_with_its_path(sample_root, tmp_path):
    with pytest.raises(UnreadableImageError, match=r"n09000035_1\.JPEG.*data\.strict=false"):
        prepare(sample_root, tmp_path / "store", workers=1, strict=True, progress_bar=False)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_mean_image_and_pca_equal_numpy_on_the_same_pixels(sample_store):
    store = Store.open(sample_store)
    keep = store.labels("train") >= 0
    images = np.asarray(store.images("train"))[keep].astype(np.float64)
    np.testing.assert_allclose(store.mean, images.mean(axis=0), rtol=1e-6, atol=1e-4)
    covariance = np.cov((images.reshape(-1, 3) / 255.0).T)
    eigval, eigvec = np.linalg.eigh(covariance)
    np.testing.assert_allclose(store.eigval, eigval[::-1], rtol=1e-5)
    for i in range(3):  # eigenvectors up to sign
        assert abs(abs(float(store.eigvec[:, i] @ eigvec[:, 2 - i])) - 1) < 1e-5


def test_complete_store_is_reused_without_touching_it(sample_root, sample_store):
    before = {p.name: p.stat().st_mtime_ns for p in sample_store.iterdir()}
    manifest = prepare(sample_root, sample_store, workers=1, progress_bar=False)
    assert manifest["splits"]["train"]["images"] == 35
    assert {p.name: p.stat().st_mtime_ns for p in sample_store.iterdir()} == before


def test_store_with_other_settings_is_refused(sample_root, sample_store):
    with pytest.raises(StoreError, match=r"data\.store_dir=.*other settings"):
        prepare(sample_root, sample_store, image_size=128, workers=1, progress_bar=False)


def test_store_of_another_version_is_refused(sample_store, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    manifest = json.loads((sample_store / "manifest.json").read_text())
    manifest["store_version"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="version 0"):
        Store.open(copy)


def test_non_empty_folder_without_a_store_is_refused(sample_root, tmp_path):
    (tmp_path / "someone_elses.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not empty"):
        prepare(sample_root, tmp_path, workers=1, progress_bar=False)
    assert (tmp_path / "someone_elses.txt").read_text() == "keep me"


def files_of(store):
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())}


def prepare_killed_after(chunks, monkeypatch, root, store, **kwargs):
    """prepare() stopped as by a kill (KeyboardInterrupt) once `chunks` chunks are written."""
    real = prepare_module._process_chunk
    calls = {"n": 0}

    def dies_after_some_chunks(task):
        calls["n"] += 1
        if calls["n"] > chunks:
            raise KeyboardInterrupt("killed")
        return real(task)

    with monkeypatch.context() as patch:
        patch.setattr(prepare_module, "_process_chunk", dies_after_some_chunks)
        with pytest.raises(KeyboardInterrupt):
            prepare(root, store, workers=1, chunk_size=8, progress_bar=False, **kwargs)


def test_interrupted_preparation_resumes_to_an_identical_store(sample_root, sample_store, tmp_path, monkeypatch):
    store = tmp_path / "store"
    prepare_killed_after(3, monkeypatch, sample_root, store)
    assert not (store / "manifest.json").exists(), "an interrupted store never claims to be complete"
    with pytest.raises(StoreError, match="no manifest.json"):
        Store.open(store)
    progress = json.loads((store / "progress.json").read_text())
    assert sum(len(done) for done in progress["done"].values()) == 3
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert files_of(store) == files_of(sample_store)


def test_parallel_preparation_gives_the_same_store(sample_root, sample_store, tmp_path):
    prepare(sample_root, tmp_path / "store", workers=2, chunk_size=8, progress_bar=False)
    assert files_of(tmp_path / "store") == files_of(sample_store)


def _prepare_in_a_process(root, store, start):
    start.wait()
    prepare(root, store, workers=1, chunk_size=8, progress_bar=False)


def test_jobs_preparing_one_store_at_once_wait_for_each_other(sample_root, sample_store, tmp_path):
    """The jobs of a parallel sweep share data.store_dir: one prepares, the others wait and reuse it."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Event()
    jobs = [context.Process(target=_prepare_in_a_process, args=(sample_root, tmp_path / "store", start)) for _ in "ab"]
    for job in jobs:
        job.start()
    start.set()
    for job in jobs:
        job.join(timeout=300)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert files_of(tmp_path / "store") == files_of(sample_store)


def test_full_disk_is_a_clear_error_and_no_complete_store(sample_root, tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(StoreError, match=r"Not enough disk space.*data\.store_dir"):
        prepare(sample_root, tmp_path / "store", workers=1, progress_bar=False)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_store_images_are_rgb_uint8_of_the_right_class(sample_store):
    """The sample classes have distinct hues: class 0 is red, so its images are red on average."""
    store = Store.open(sample_store)
    labels = store.labels("train")
    red = np.asarray(store.images("train"))[labels == 0].reshape(-1, 3).mean(0)
    assert red[0] > red[1] + 40 and red[0] > red[2] + 40


def test_store_dir_that_cannot_be_written_says_where_to_put_it(sample_root, tmp_path, monkeypatch):
    """A read-only dataset folder is never written into: the store goes to data.store_dir, and an unwritable
    one is refused before anything is written (the tests run as root, so write access is simulated)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
    with pytest.raises(StoreError, match=r"data\.store_dir=.*not writable: point it at a writable folder"):
        prepare(sample_root, tmp_path / "store", workers=1, progress_bar=False)
    assert list((tmp_path / "store").iterdir()) == []


def test_store_dir_that_cannot_be_created_says_so(sample_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=r"Cannot create data\.store_dir=.*writable folder"):
        prepare(sample_root, blocker / "store", workers=1, progress_bar=False)


def test_preparing_from_the_official_archives_gives_the_store_of_the_extracted_folders(
    sample_root, sample_store, tmp_path
):
    from test_layout import official_archives

    root = official_archives(sample_root, tmp_path / "archives")
    manifest = prepare(root, tmp_path / "store", workers=2, chunk_size=8, progress_bar=False)
    ours, theirs = Store.open(tmp_path / "store"), Store.open(sample_store)
    for split in ("train", "val"):
        assert np.array_equal(ours.images(split), theirs.images(split))
        assert np.array_equal(ours.labels(split), theirs.labels(split))
    assert np.array_equal(ours.mean, theirs.mean)
    (skipped,) = manifest["splits"]["train"]["skipped"]
    assert skipped["path"] == "ILSVRC2012_img_train.tar/n09000035.tar/n09000035_1.JPEG"
    assert manifest["source"]["form"] == "train archive, val archive with devkit"


def all_files_of(store):
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def jpeg_store(sample_root, tmp_path_factory):
    store = tmp_path_factory.mktemp("jpeg") / "store"
    prepare(sample_root, store, workers=2, chunk_size=8, progress_bar=False, store_format="jpeg")
    return store


def test_jpeg_store_holds_the_raw_stores_images_as_quality_90_jpegs(jpeg_store, sample_store):
    ours, raw = Store.open(jpeg_store), Store.open(sample_store)
    assert ours.format == "jpeg" and ours.manifest["settings"]["quality"] == 90
    assert ours.manifest["splits"] == raw.manifest["splits"]  # the same images and the same skipped file
    for split in ("train", "val"):
        assert np.array_equal(ours.labels(split), raw.labels(split))
        keep = np.flatnonzero(raw.labels(split) >= 0)
        decoded, original = ours.read(split, keep), raw.read(split, keep)
        assert decoded.shape == original.shape and decoded.dtype == np.uint8
        # JPEG at quality 90 on the sample's noisy stripes: a few levels per pixel on average
        assert np.abs(decoded.astype(int) - original.astype(int)).mean() < 4
        assert ours.jpeg_reader(split).encoded(keep[0])[:2] == b"\xff\xd8"  # a JPEG, as stored
    size = sum(p.stat().st_size for p in jpeg_store.rglob("*.bin"))
    assert size < 0.25 * sum(p.stat().st_size for p in sample_store.glob("*_images.npy"))
    # mean and PCA are of the decoded pixels, which differ from the raw ones by JPEG noise only
    assert np.abs(ours.mean - raw.mean).mean() < 2 and np.allclose(ours.eigval, raw.eigval, rtol=0.1)
    with pytest.raises(StoreError, match="holds JPEGs"):
        ours.images("train")


def test_interrupted_jpeg_preparation_resumes_to_an_identical_store(sample_root, jpeg_store, tmp_path, monkeypatch):
    store = tmp_path / "store"
    prepare_killed_after(2, monkeypatch, sample_root, store, store_format="jpeg")
    assert not (store / "manifest.json").exists()
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    assert all_files_of(store) == all_files_of(jpeg_store)


def test_a_store_of_the_other_format_is_refused(sample_root, sample_store, jpeg_store):
    with pytest.raises(StoreError, match="other settings"):
        prepare(sample_root, sample_store, progress_bar=False, store_format="jpeg")
    with pytest.raises(StoreError, match="other settings"):
        prepare(sample_root, jpeg_store, progress_bar=False, store_format="raw")
    assert prepare(sample_root, jpeg_store, chunk_size=64, store_format="jpeg")["settings"]["format"] == "jpeg"
